"""Debezium relaying the outbox end to end, on PostgreSQL and Apache Kafka.

The consumer is the real ``run_consumer`` process; run_relay runs only where a
test hands the outbox over between the two relays.
"""

import time

import pytest
from django.core.management import call_command

from devtools.connect import ConnectWorker
from notifications.models import Notification, ProcessedEvent
from relay import cdc
from relay.models import OutboxEvent
from tests.cdc_support import *  # noqa: F403 (the CDC fixtures)
from tests.cdc_support import (
    Connector,
    Load,
    all_processed,
    assert_each_event_once_and_in_order,
    published_processed,
)
from tests.conftest import wait_until
from tests.kafka_utils import headers_of, read_topic
from tests.test_flow import next_weekday, seed_request

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


def duplicates_on(kafka, topic: str, events: int) -> int:
    records = read_topic(kafka.address, topic, expect=events, timeout=30)
    ids = [headers_of(r)["ce_id"] for r in records]
    assert len(set(ids)) == events, "every event reached the topic"
    return len(ids) - events


def test_book_reschedule_cancel_through_the_api_reach_notifications_once_in_order(
    settings, patient, patient_client, doctor, connector, start_cdc_process
):
    settings.OUTBOX_RELAY = "cdc"
    cdc.cdc_setup()
    connector.start()
    start_cdc_process("run_consumer")
    booked = patient_client.post(
        "/api/appointments", seed_request(doctor, next_weekday()), format="json"
    )
    assert booked.status_code == 201, booked.content
    url = f"/api/appointments/{booked.json()['id']}"
    moved = {"date": next_weekday(8).isoformat(), "timeSlot": "14:30"}
    assert (
        patient_client.post(f"{url}/reschedule", moved, format="json").status_code
        == 200
    )
    assert patient_client.post(f"{url}/cancel").status_code == 200

    assert wait_until(all_processed, timeout=60)
    assert assert_each_event_once_and_in_order([patient]) == 3
    kinds = Notification.objects.filter(recipient=patient).order_by("id")
    assert list(kinds.values_list("event_type", flat=True)) == [
        "appointment.booked",
        "appointment.rescheduled",
        "appointment.cancelled",
    ]
    assert Notification.objects.filter(recipient=doctor.user).count() == 3
    # cdc mode: nobody marks the rows; they stay until retention removes them
    assert OutboxEvent.objects.pending().count() == 3


def test_connect_worker_sigkilled_mid_stream_loses_nothing_and_duplicates_are_skipped(
    kafka, cdc_topic, cdc_slot, doctor, make_user, tmp_path, start_cdc_process
):
    patients = [make_user(f"patient-{i}") for i in range(4)]
    cdc.cdc_setup()
    worker = ConnectWorker(tmp_path / "connect", kafka.address, flush_ms=500)
    try:
        connector = Connector(worker.start()).start()
        start_cdc_process("run_consumer")
        load = Load(doctor, patients, pause=0.01)
        load.start()
        assert wait_until(lambda: ProcessedEvent.objects.count() >= 30, timeout=60)
        worker.kill()  # SIGKILL: no offset commit, no goodbye
        time.sleep(1.0)  # bookings go on while it is down
        connector.start(worker.start())  # same offsets file: resumes from its LSN
        time.sleep(2.0)
        load.stop()
        assert wait_until(all_processed, timeout=90)
    finally:
        worker.stop()
    events = assert_each_event_once_and_in_order(patients)
    assert events > 30
    print(f"{events} events, {duplicates_on(kafka, cdc_topic, events)} duplicates")


def test_poll_to_cdc_and_back_under_steady_load_loses_nothing_and_keeps_order(
    kafka, cdc_topic, connector, doctor, make_user, start_cdc_process
):
    patients = [make_user(f"patient-{i}") for i in range(4)]
    start_cdc_process("run_consumer")
    relay = start_cdc_process("run_relay")
    load = Load(doctor, patients, pause=0.02)
    load.start()
    assert wait_until(lambda: OutboxEvent.objects.published().count() >= 20, 60)

    # poll -> cdc: slot first, the relay drains what came before it, then stops
    call_command("outbox_cdc", "handover-to-cdc", timeout=60)
    assert relay.terminate() == 0
    assert wait_until(published_processed, timeout=60)  # the consumer caught up
    connector.start()
    at_cdc = OutboxEvent.objects.count()
    assert wait_until(lambda: OutboxEvent.objects.count() > at_cdc + 20, 60)

    # cdc -> poll: the connector stops at a committed position, its rows are marked
    connector.stop()
    call_command("outbox_cdc", "handover-to-poll")
    assert wait_until(published_processed, timeout=60)
    start_cdc_process("run_relay")
    at_poll = OutboxEvent.objects.count()
    assert wait_until(lambda: OutboxEvent.objects.count() > at_poll + 20, 60)
    load.stop()

    assert wait_until(all_processed, timeout=90)
    events = assert_each_event_once_and_in_order(patients)
    assert not OutboxEvent.objects.pending().exists()
    print(f"{events} events, {duplicates_on(kafka, cdc_topic, events)} duplicates")
