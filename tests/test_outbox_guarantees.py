"""The outbox's promises: atomic with the change, delivered once in effect."""

import json
import uuid
from datetime import time

import pytest
from confluent_kafka import Producer
from django.db import IntegrityError, transaction

from appointments.events import APPOINTMENT_BOOKED, appointment_event
from appointments.models import Appointment
from appointments.services import appointment_book
from messaging.config import producer_config
from messaging.topics import ensure_topics
from notifications.models import Notification, ProcessedEvent
from relay.events import cloudevent_headers, enqueue
from relay.models import OutboxEvent
from relay.stages import Marker
from relay.worker import Relay
from tests.conftest import wait_until
from tests.kafka_utils import committed_total, headers_of, read_topic
from tests.test_flow import next_weekday

pytestmark = pytest.mark.django_db(transaction=True)


def test_booking_is_rolled_back_when_the_outbox_write_fails(
    patient, doctor, monkeypatch
):
    def broken_enqueue(event):
        raise IntegrityError("outbox insert failed")

    monkeypatch.setattr("appointments.services.enqueue", broken_enqueue)
    with pytest.raises(IntegrityError):
        appointment_book(
            patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(10)
        )
    assert Appointment.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


def test_outbox_row_is_rolled_back_with_the_appointment(patient, doctor):
    with pytest.raises(RuntimeError), transaction.atomic():
        appointment_book(
            patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(10)
        )
        assert OutboxEvent.objects.count() == 1
        raise RuntimeError("the caller's transaction fails after booking")
    assert Appointment.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


def test_enqueue_outside_a_transaction_is_refused(patient, doctor):
    appointment = Appointment.objects.create(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9)
    )
    with pytest.raises(RuntimeError, match="transaction.atomic"):
        enqueue(appointment_event(APPOINTMENT_BOOKED, appointment))
    assert OutboxEvent.objects.count() == 0


def test_duplicate_delivery_creates_notifications_once(
    patient, doctor, broker, topic, start_process
):
    appointment = appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(10)
    )
    row = OutboxEvent.objects.get()
    ensure_topics([topic])
    producer = Producer(producer_config())
    for _ in range(3):  # the same event, delivered three times
        producer.produce(
            topic,
            key=row.key.encode(),
            value=json.dumps(row.payload).encode(),
            headers=list(row.headers.items()),
        )
    assert producer.flush(10) == 0

    consumer = start_process("run_consumer")
    assert wait_until(
        lambda: ProcessedEvent.objects.filter(event_id=row.event_id).exists(), 30
    ), consumer.output
    assert wait_until(
        lambda: committed_total(broker.address, f"group-{topic}", topic) == 3, 30
    ), "the consumer must have read and committed all three copies"
    assert consumer.terminate() == 0
    assert Notification.objects.filter(appointment_id=appointment.id).count() == 2
    assert consumer.output.count("NOTIFICATION:") == 2


class SimulatedCrash(BaseException):
    """Stands for SIGKILL between the broker's ack and the database mark."""


def test_relay_killed_before_marking_gives_exactly_one_notification(
    patient, doctor, broker, topic, start_process, monkeypatch
):
    appointment = appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(14)
    )

    def crash(self, batch):
        raise SimulatedCrash

    monkeypatch.setattr(Marker, "mark", crash)
    with pytest.raises(SimulatedCrash):
        Relay(once=True).run()
    monkeypatch.undo()
    row = OutboxEvent.objects.get()
    assert row.published_at is None, "nothing may be marked when the relay died first"

    # the restarted relay publishes the row again; the consumer sees it twice
    relay = start_process("run_relay")
    consumer = start_process("run_consumer")
    assert wait_until(lambda: OutboxEvent.objects.pending().count() == 0, 30), (
        relay.output
    )
    assert wait_until(
        lambda: Notification.objects.filter(appointment_id=appointment.id).count() >= 2,
        30,
    ), consumer.output
    records = read_topic(broker.address, topic, expect=2)
    assert len(records) == 2, "the broker holds the event twice"
    assert {headers_of(r)["ce_id"] for r in records} == {str(row.event_id)}
    group = f"group-{topic}"
    # a relay transaction's commit marker takes an offset too: compare with the last record
    last = max(r.offset() for r in records)  # one key: both copies share a partition
    assert wait_until(
        lambda: committed_total(broker.address, group, topic) > last, 30
    ), "the consumer must have read and committed both copies"
    assert consumer.terminate() == 0  # SIGTERM: finishes and commits what it read
    assert relay.terminate() == 0
    assert Notification.objects.filter(appointment_id=appointment.id).count() == 2
    assert ProcessedEvent.objects.filter(event_id=row.event_id).count() == 1


def test_cloudevent_headers_follow_the_contract():
    from relay.events import Event

    event = Event(
        type="appointment.booked",
        aggregatetype="appointment",
        aggregateid="a1",
        data={},
        source="/healthcare/appointments",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    headers = cloudevent_headers(event)
    assert headers["ce_id"] == str(event.event_id)
    uuid.UUID(headers["ce_id"])
    assert headers["ce_time"].endswith("Z")
    assert headers["ce_subject"] == "a1"
    assert headers["traceparent"].startswith("00-")
