"""The lifecycle state machine: each transition, its event in the same transaction, and 409s."""

from datetime import time

import pytest
from django.db import transaction

from appointments.models import Appointment
from appointments.services import (
    appointment_book,
    appointment_cancel,
    appointment_complete,
    appointment_mark_no_show,
    appointment_reschedule,
)
from core.errors import Conflict
from relay.models import OutboxEvent
from tests.appointment_factories import booking, next_weekday, past_appointment

pytestmark = pytest.mark.django_db


def events_of(appointment) -> list[OutboxEvent]:
    return list(
        OutboxEvent.objects.filter(aggregateid=str(appointment.id)).order_by("seq")
    )


def reschedule(client, appointment, body: dict):
    return client.post(
        f"/api/appointments/{appointment.id}/reschedule", body, format="json"
    )


@pytest.fixture
def booked(patient, doctor):
    return appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(10)
    )


@pytest.fixture
def started(patient, doctor):
    return past_appointment(patient=patient, doctor=doctor)


def test_cancel_emits_cancelled_event_in_same_transaction(patient_client, booked):
    response = patient_client.post(f"/api/appointments/{booked.id}/cancel")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    booked.refresh_from_db()
    assert booked.status == "cancelled"
    booked_event, cancelled = events_of(booked)
    assert (booked_event.type, cancelled.type) == (
        "appointment.booked",
        "appointment.cancelled",
    )
    assert cancelled.payload["status"] == "cancelled"
    assert cancelled.payload["cancelledBy"] == "patient"
    assert cancelled.key == str(booked.id)


def test_transition_rolled_back_leaves_no_event(patient, booked):
    with pytest.raises(RuntimeError), transaction.atomic():
        appointment_cancel(appointment=booked, by=patient)
        raise RuntimeError("the surrounding transaction fails")
    booked.refresh_from_db()
    assert booked.status == "booked"
    assert [e.type for e in events_of(booked)] == ["appointment.booked"]


def test_reschedule_moves_frees_old_slot_and_emits_old_and_new_slot(
    patient_client, other_patient, doctor, booked
):
    new_day = next_weekday(days_ahead=14)
    response = reschedule(
        patient_client, booked, {"date": new_day.isoformat(), "timeSlot": "2:30 PM"}
    )
    assert response.status_code == 200, response.content
    assert (response.json()["date"], response.json()["timeSlot"]) == (
        new_day.isoformat(),
        "14:30",
    )
    assert response.json()["status"] == "booked"

    *_, moved = events_of(booked)
    assert moved.type == "appointment.rescheduled"
    assert moved.payload == {
        "appointmentId": str(booked.id),
        "patientId": booked.patient_id,
        "doctorId": doctor.id,
        "doctorUserId": doctor.user_id,
        "doctorName": "Dr. Smith",
        "date": new_day.isoformat(),
        "timeSlot": "14:30",
        "previousDate": booked.date.isoformat(),
        "previousTimeSlot": "10:00",
        "status": "booked",
        "rescheduledBy": "patient",
    }

    # the old slot is free for someone else at once
    again = appointment_book(
        patient=other_patient, doctor=doctor, date=booked.date, time_slot=time(10)
    )
    assert again.status == "booked"


def test_reschedule_to_a_taken_slot_is_409_and_changes_nothing(
    patient_client, other_patient, doctor, booked
):
    taken = appointment_book(
        patient=other_patient, doctor=doctor, date=booked.date, time_slot=time(11)
    )
    response = reschedule(
        patient_client, booked, {"date": taken.date.isoformat(), "timeSlot": "11:00"}
    )
    assert response.status_code == 409
    booked.refresh_from_db()
    assert booked.time_slot == time(10)
    assert [e.type for e in events_of(booked)] == ["appointment.booked"]


def test_reschedule_checks_the_same_rules_as_booking(patient_client, booked):
    response = reschedule(
        patient_client, booked, {"date": booked.date.isoformat(), "timeSlot": "10:10"}
    )
    assert response.status_code == 400
    assert "timeSlot" in response.json()["errors"]
    response = reschedule(patient_client, booked, {"date": "2001-01-01"})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"timeSlot"}


def test_reschedule_to_its_own_slot_is_400(patient_client, booked):
    response = reschedule(
        patient_client, booked, {"date": booked.date.isoformat(), "timeSlot": "10:00"}
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "timeSlot": ["The appointment is already in this slot."]
    }


def test_complete_and_no_show_by_the_doctor_emit_their_events(
    doctor_client, patient, doctor
):
    first = past_appointment(patient=patient, doctor=doctor, at=time(9))
    second = past_appointment(patient=patient, doctor=doctor, at=time(9, 30))
    response = doctor_client.post(f"/api/appointments/{first.id}/complete")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "completed"
    response = doctor_client.post(f"/api/appointments/{second.id}/no-show")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "no_show"
    assert [e.type for e in events_of(first)] == ["appointment.completed"]
    assert [e.type for e in events_of(second)] == ["appointment.no_show"]
    assert events_of(second)[0].payload["status"] == "no_show"


def test_complete_before_the_slot_starts_is_409(doctor_client, booked):
    response = doctor_client.post(f"/api/appointments/{booked.id}/complete")
    assert response.status_code == 409
    assert response.json()["detail"].startswith("The appointment has not started yet")
    response = doctor_client.post(f"/api/appointments/{booked.id}/no-show")
    assert response.status_code == 409


def test_cancel_after_the_slot_started_is_409(patient_client, started):
    response = patient_client.post(f"/api/appointments/{started.id}/cancel")
    assert response.status_code == 409
    assert "already started" in response.json()["detail"]


@pytest.mark.parametrize(
    "final, action",
    [
        ("cancelled", "cancel"),
        ("cancelled", "complete"),
        ("completed", "cancel"),
        ("completed", "no-show"),
        ("no_show", "complete"),
        ("no_show", "reschedule"),
        ("completed", "reschedule"),
    ],
)
def test_illegal_transition_answers_409_naming_the_current_state(
    staff_client, patient, doctor, final, action
):
    appointment = past_appointment(patient=patient, doctor=doctor, status=final)
    body = {"date": next_weekday().isoformat(), "timeSlot": "10:00"}
    response = staff_client.post(
        f"/api/appointments/{appointment.id}/{action}", body, format="json"
    )
    assert response.status_code == 409, response.content
    assert response.json()["status"] == final
    assert f"The appointment is {final}" in response.json()["detail"]
    assert not OutboxEvent.objects.filter(aggregateid=str(appointment.id)).exists()


def test_state_machine_on_the_model_refuses_a_second_cancel(patient, booked):
    appointment_cancel(appointment=booked, by=patient)
    with pytest.raises(Conflict) as exc:
        appointment_cancel(appointment=booked, by=patient)
    assert exc.value.extra == {"status": "cancelled"}


def test_service_reads_the_locked_row_not_a_stale_instance(patient, booked):
    stale = Appointment.objects.get(pk=booked.pk)
    appointment_cancel(appointment=booked, by=patient)
    with pytest.raises(Conflict):
        appointment_reschedule(
            appointment=stale,
            by=patient,
            date=next_weekday(days_ahead=21),
            time_slot=time(9),
        )


def test_events_of_one_appointment_are_in_transition_order(patient, doctor, staff):
    appointment = appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9)
    )
    appointment = appointment_reschedule(
        appointment=appointment,
        by=patient,
        date=next_weekday(days_ahead=14),
        time_slot=time(15),
    )
    appointment_cancel(appointment=appointment, by=staff)
    events = events_of(appointment)
    assert [e.type for e in events] == [
        "appointment.booked",
        "appointment.rescheduled",
        "appointment.cancelled",
    ]
    assert events[-1].payload["cancelledBy"] == "staff"


def test_staff_completes_any_appointment(patient, doctor, staff):
    started = past_appointment(patient=patient, doctor=doctor)
    assert appointment_complete(appointment=started, by=staff).status == "completed"


def test_no_show_service_sets_no_show(patient, doctor):
    started = past_appointment(patient=patient, doctor=doctor)
    assert (
        appointment_mark_no_show(appointment=started, by=doctor.user).status
        == "no_show"
    )


def test_full_booking_then_list_shows_it(patient_client, doctor):
    response = patient_client.post(
        "/api/appointments", booking(doctor, next_weekday()), format="json"
    )
    assert response.status_code == 201
    listed = patient_client.get("/api/appointments").json()
    assert [a["id"] for a in listed["results"]] == [response.json()["id"]]
