"""The relay publishes every event, in order per key, as CloudEvents, and marks it."""

import json

import pytest

from relay.events import Event, enqueue
from relay.models import OutboxEvent
from tests.kafka_utils import headers_of, read_topic
from tests.relay_support import (
    assert_complete_and_ordered,
    enqueue_events,
    make_events,
    new_keys,
    run_relay_once,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_relay_publishes_every_event_once_in_key_order_across_many_batches(
    broker, topic
):
    keys = new_keys(25)
    for _ in range(3):  # several transactions, each interleaving keys
        enqueue_events(make_events(keys, 8))

    published = run_relay_once(batch_size=37)  # many pipelined batches

    assert published == 600
    records = read_topic(broker.address, topic, expect=600)
    assert len(records) == 600, "each event exactly once when nothing failed"
    assert_complete_and_ordered(records)
    assert not OutboxEvent.objects.pending().exists()
    rows = {str(r.event_id): r for r in OutboxEvent.objects.all()}
    for record in records:
        row = rows[headers_of(record)["ce_id"]]
        assert (row.partition, row.offset) == (record.partition(), record.offset())


def test_record_is_a_binary_mode_cloudevent_with_json_data(broker, topic):
    from django.db import transaction

    event = Event(
        type="appointment.booked",
        aggregatetype="appointment",
        aggregateid="3f1c9d8e-0000-4000-8000-000000000001",
        data={
            "appointmentId": "3f1c9d8e-0000-4000-8000-000000000001",
            "reason": "Grüße",
        },
        source="/healthcare/appointments",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    with transaction.atomic():
        enqueue(event)

    run_relay_once()

    [record] = read_topic(broker.address, topic, expect=1)
    assert record.key() == b"3f1c9d8e-0000-4000-8000-000000000001"
    assert json.loads(record.value()) == event.data
    headers = headers_of(record)
    assert headers["ce_id"] == str(event.event_id)
    assert headers["ce_type"] == "appointment.booked"
    assert headers["ce_specversion"] == "1.0"
    assert headers["content-type"] == "application/json"
    assert headers["traceparent"] == event.traceparent
    assert event.event_id.version == 7, "event ids are time-ordered (UUIDv7)"


def test_topic_per_aggregate_type_with_prefix(broker, settings, topic):
    settings.OUTBOX = {
        **settings.OUTBOX,
        "TOPIC_PREFIX": "clinic.",
        "TOPICS": {"appointment": topic, "invoice": f"{topic}-invoices"},
    }
    keys = new_keys(3)
    enqueue_events(make_events(keys, 2) + make_events(keys, 1, aggregatetype="invoice"))

    run_relay_once()

    appointments = read_topic(broker.address, f"clinic.{topic}", expect=6)
    invoices = read_topic(broker.address, f"clinic.{topic}-invoices", expect=3)
    assert len(appointments) == 6 and len(invoices) == 3
    assert set(OutboxEvent.objects.values_list("topic", flat=True)) == {
        f"clinic.{topic}",
        f"clinic.{topic}-invoices",
    }


def test_shards_split_keys_and_keep_each_key_in_order(broker, topic):
    keys = new_keys(40)
    enqueue_events(make_events(keys, 5))

    published = run_relay_once(shards=4, batch_size=50)

    assert published == 200
    records = read_topic(broker.address, topic, expect=200)
    assert len(records) == 200
    assert_complete_and_ordered(records)
    assert {row.bucket % 4 for row in OutboxEvent.objects.all()} == {0, 1, 2, 3}


@pytest.fixture
def busy_relay(monkeypatch):
    """Make the relay behave as under a large backlog: walk forward with a cursor and
    look back for rows it passed on every claim."""
    from relay.dispatch import DispatchRules

    monkeypatch.setattr(DispatchRules, "claim_from_oldest_below", 0)
    monkeypatch.setattr(DispatchRules, "look_back_interval", 0.0)


def test_busy_relay_keeps_key_order_with_its_cursor(broker, topic, busy_relay):
    keys = new_keys(20)
    enqueue_events(make_events(keys, 10))

    assert run_relay_once(batch_size=23) == 200

    records = read_topic(broker.address, topic, expect=200)
    assert len(records) == 200
    assert_complete_and_ordered(records)


@pytest.mark.postgres_only
def test_row_committed_late_behind_the_cursor_is_still_published(
    broker, topic, busy_relay
):
    import threading

    from django.db import connection, transaction

    from tests.conftest import wait_until
    from tests.relay_support import relay_in_thread

    enqueued, release = threading.Event(), threading.Event()

    def late_commit():
        try:
            with transaction.atomic():  # takes its id now, commits after later ids
                enqueue(make_events(new_keys(1), 1)[0])
                enqueued.set()
                release.wait(10)
        finally:
            connection.close()

    writer = threading.Thread(target=late_commit)
    writer.start()
    assert enqueued.wait(5)
    with relay_in_thread(poll_interval=0.05):
        enqueue_events(make_events(new_keys(10), 3))
        assert wait_until(
            lambda: OutboxEvent.objects.published().count() == 30, timeout=20
        )
        release.set()
        writer.join()
        assert wait_until(
            lambda: not OutboxEvent.objects.pending().exists(), timeout=10
        )

    records = read_topic(broker.address, topic, expect=31)
    assert len(records) == 31
    assert_complete_and_ordered(records)
