"""The walking skeleton end to end: API -> outbox -> relay -> broker -> consumer -> API."""

import json
import signal
from datetime import date, timedelta

import pytest

from appointments.models import Appointment
from notifications.models import Notification
from relay.models import OutboxEvent
from tests.conftest import wait_until
from tests.kafka_utils import headers_of, read_topic

pytestmark = pytest.mark.django_db(transaction=True)


def next_weekday(days_ahead: int = 7) -> date:
    d = date.today() + timedelta(days=days_ahead)
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d


def seed_request(doctor, when: date, time_slot: str = "10:00 AM") -> dict:
    return {
        "doctorId": str(doctor.id),
        "doctorName": "Dr. Smith",
        "date": when.isoformat(),
        "timeSlot": time_slot,
        "reason": "Check-up",
    }


def test_booking_reaches_topic_and_becomes_notifications(
    patient, patient_client, doctor, broker, topic, start_process
):
    relay = start_process("run_relay")
    consumer = start_process("run_consumer")

    response = patient_client.post(
        "/api/appointments", seed_request(doctor, next_weekday()), format="json"
    )
    assert response.status_code == 201, response.content
    appointment_id = response.json()["id"]

    def my_notifications():
        body = patient_client.get("/api/notifications").json()
        return [n for n in body["results"] if n["appointmentId"] == appointment_id]

    notes = wait_until(my_notifications, timeout=30)
    assert len(notes) == 1, consumer.output
    assert notes[0]["eventType"] == "appointment.booked"
    assert "Dr. Smith" in notes[0]["message"]
    assert set(notes[0]) >= {"appointmentId", "eventType", "message", "createdAt"}
    doctor_notes = Notification.objects.filter(
        recipient=doctor.user, appointment_id=appointment_id
    )
    assert doctor_notes.count() == 1

    assert consumer.wait_for_output(
        f"NOTIFICATION: appointment.booked appointment={appointment_id} recipient={patient.id}"
    )
    assert "Check-up" not in consumer.output and "alice" not in consumer.output

    [record] = read_topic(broker.address, topic, expect=1)
    headers = headers_of(record)
    # the consumer's line carries the id of the event it is about (log_context)
    assert consumer.wait_for_output(
        f"recipient={patient.id} event_id={headers['ce_id']}"
    ), consumer.output
    assert record.key().decode() == appointment_id
    assert headers["ce_type"] == "appointment.booked"
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_source"] == "/healthcare/appointments"
    assert headers["ce_subject"] == appointment_id
    assert headers["content-type"] == "application/json"
    value = json.loads(record.value())
    assert value["appointmentId"] == appointment_id
    assert value["doctorName"] == "Dr. Smith" and value["timeSlot"] == "10:00"

    row = OutboxEvent.objects.get(aggregateid=appointment_id)
    assert row.published_at is not None
    assert (row.partition, row.offset) == (record.partition(), record.offset())
    assert str(row.event_id) == headers["ce_id"]

    assert relay.terminate() == 0
    assert consumer.terminate() == 0


def test_relay_keeps_running_while_broker_is_down_then_publishes(
    patient, doctor, topic, start_process, settings
):
    from appointments.services import appointment_book
    from tests.broker import Broker

    down = Broker()  # a port with nothing listening yet
    appointment = appointment_book(
        patient=patient,
        doctor=doctor,
        date=next_weekday(),
        time_slot=__import__("datetime").time(11),
    )
    relay = start_process(
        "run_relay",
        env={"KAFKA_BROKERS": down.address, "KAFKA_MESSAGE_TIMEOUT_MS": "3000"},
    )
    assert relay.wait_for_output("broker unavailable", timeout=30), relay.output
    assert relay.proc.poll() is None, "the relay must keep running without a broker"
    assert OutboxEvent.objects.pending().count() == 1

    down.start()
    try:
        published = wait_until(
            lambda: OutboxEvent.objects.filter(
                aggregateid=str(appointment.id), published_at__isnull=False
            ).exists(),
            timeout=40,
        )
        assert published, relay.output
        records = read_topic(down.address, topic, expect=1)
        assert [r.key().decode() for r in records] == [str(appointment.id)]
        assert relay.terminate() == 0
    finally:
        down.stop()


def test_sigterm_stops_relay_and_consumer_with_status_zero(start_process):
    relay = start_process("run_relay")
    consumer = start_process("run_consumer")
    assert relay.wait_for_output("relay: started")
    assert consumer.wait_for_output("consumer: started")
    relay.proc.send_signal(signal.SIGTERM)
    consumer.proc.send_signal(signal.SIGINT)
    assert relay.proc.wait(10) == 0
    assert consumer.proc.wait(10) == 0
