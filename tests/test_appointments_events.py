"""Every transition end to end: its own record on the topic, notifications for both sides."""

import json
from datetime import time

import pytest

from notifications.models import Notification
from tests.appointment_factories import booking, next_weekday, past_appointment
from tests.conftest import wait_until
from tests.kafka_utils import headers_of, read_topic

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_transition_is_its_own_record_and_notifies_patient_and_doctor(
    patient,
    patient_client,
    doctor,
    doctor_client,
    staff_client,
    broker,
    topic,
    start_process,
):
    relay = start_process("run_relay")
    consumer = start_process("run_consumer")

    day, later = next_weekday(), next_weekday(days_ahead=14)
    moved = patient_client.post(
        "/api/appointments", booking(doctor, day), format="json"
    ).json()
    url = f"/api/appointments/{moved['id']}"
    reschedule = {"date": later.isoformat(), "timeSlot": "15:00"}
    assert (
        patient_client.post(f"{url}/reschedule", reschedule, format="json").status_code
        == 200
    )
    assert doctor_client.post(f"{url}/cancel").status_code == 200
    done = past_appointment(patient=patient, doctor=doctor, at=time(9))
    assert (
        doctor_client.post(f"/api/appointments/{done.id}/complete").status_code == 200
    )
    missed = past_appointment(patient=patient, doctor=doctor, at=time(9, 30))
    assert (
        staff_client.post(f"/api/appointments/{missed.id}/no-show").status_code == 200
    )

    records = read_topic(broker.address, topic, expect=5)
    by_key: dict[str, list] = {}
    for record in records:
        by_key.setdefault(record.key().decode(), []).append(record)
    assert {k: [headers_of(r)["ce_type"] for r in v] for k, v in by_key.items()} == {
        moved["id"]: [
            "appointment.booked",
            "appointment.rescheduled",
            "appointment.cancelled",
        ],
        str(done.id): ["appointment.completed"],
        str(missed.id): ["appointment.no_show"],
    }
    assert len({r.partition() for r in by_key[moved["id"]]}) == 1, (
        "one key, one partition"
    )
    for key, key_records in by_key.items():
        for record in key_records:
            assert headers_of(record)["ce_subject"] == key
            assert json.loads(record.value())["appointmentId"] == key
    rescheduled = json.loads(by_key[moved["id"]][1].value())
    assert (rescheduled["previousDate"], rescheduled["previousTimeSlot"]) == (
        day.isoformat(),
        "10:00",
    )

    def patient_notes():
        return patient_client.get("/api/notifications?pageSize=50").json()["results"]

    assert wait_until(lambda: len(patient_notes()) >= 5, timeout=30), consumer.output
    notes = patient_notes()
    assert sorted(n["eventType"] for n in notes) == sorted(
        [
            "appointment.booked",
            "appointment.rescheduled",
            "appointment.cancelled",
            "appointment.completed",
            "appointment.no_show",
        ]
    )
    text = {n["eventType"]: n["message"] for n in notes}
    assert (
        f"moved from {day.isoformat()} at 10:00 to {later.isoformat()} at 15:00"
        in text["appointment.rescheduled"]
    )
    assert "cancelled" in text["appointment.cancelled"]
    assert "missed" in text["appointment.no_show"]
    assert patient_client.get("/api/notifications/unread-count").json() == {"unread": 5}

    doctor_notes = Notification.objects.filter(recipient=doctor.user)
    assert sorted(doctor_notes.values_list("event_type", flat=True)) == sorted(
        n["eventType"] for n in notes
    )
    assert relay.terminate() == 0
    assert consumer.terminate() == 0
