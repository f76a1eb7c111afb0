"""Failures: an event that cannot be written, the broker going away, lost connections."""

import time

import pytest
from django.db import connection

from relay.models import OutboxEvent
from relay.store import event_backoff
from tests.broker import Broker
from tests.conftest import wait_until
from tests.kafka_utils import headers_of, read_topic
from tests.relay_support import (
    assert_complete_and_ordered,
    enqueue_events,
    make_events,
    new_keys,
    relay_in_thread,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_event_that_cannot_be_written_backs_off_and_holds_only_its_key(
    broker, topic, settings
):
    settings.OUTBOX = {**settings.OUTBOX, "MAX_BACKOFF_S": 2}
    stuck, other = new_keys(2)
    events = make_events([stuck, other], 3)
    events[0] = make_events([stuck], 1, size=1_200_000)[0]  # above message.max.bytes
    enqueue_events(events)
    first = OutboxEvent.objects.filter(key=stuck).order_by("seq").first()

    attempts_seen = []  # (attempts, when the relay recorded it)
    with relay_in_thread(poll_interval=0.05):

        def watch():
            row = OutboxEvent.objects.get(seq=first.seq)
            if not attempts_seen or attempts_seen[-1][0] != row.attempts:
                attempts_seen.append((row.attempts, time.monotonic()))
            return row.attempts >= 4

        assert wait_until(watch, timeout=30, interval=0.02), attempts_seen
        row = OutboxEvent.objects.get(seq=first.seq)
        assert row.published_at is None and row.next_attempt_at is not None
        assert "too large" in row.last_error.lower() or "size" in row.last_error.lower()
        # Its key waits behind it; the other key has flowed.
        assert (
            OutboxEvent.objects.filter(key=stuck, published_at__isnull=True).count()
            == 3
        )
        assert not OutboxEvent.objects.filter(
            key=other, published_at__isnull=True
        ).exists()
        # Exponential backoff: each retry waited at least its delay (0.5 s, 1 s, 2 s).
        seen = [(n, t) for n, t in attempts_seen if n >= 1]
        for (n, t), (_, t_next) in zip(seen, seen[1:]):
            assert t_next - t >= event_backoff(n, 2) * 0.9, attempts_seen

        OutboxEvent.objects.filter(seq=first.seq).update(
            payload={"appointmentId": stuck, "fixed": True}
        )
        assert wait_until(
            lambda: not OutboxEvent.objects.pending().exists(), timeout=15
        )

    records = read_topic(broker.address, topic, expect=6)
    assert len(records) == 6
    assert_complete_and_ordered(records)


def test_relay_rides_out_a_broker_restart_and_recreates_the_topic(topic, settings):
    own = Broker().start()
    settings.KAFKA = {
        **settings.KAFKA,
        "BROKERS": own.address,
        "MESSAGE_TIMEOUT_MS": 3000,
    }
    try:
        keys = new_keys(5)
        with relay_in_thread(poll_interval=0.05):
            enqueue_events(make_events(keys, 2))
            assert wait_until(
                lambda: not OutboxEvent.objects.pending().exists(), timeout=20
            )

            own.stop()  # memory only: it comes back empty, without the topic
            enqueue_events(make_events(keys, 3))
            time.sleep(2)
            assert OutboxEvent.objects.pending().count() == 15
            own.start()
            assert wait_until(
                lambda: not OutboxEvent.objects.pending().exists(), timeout=40
            )

        after_restart = list(OutboxEvent.objects.order_by("seq"))[10:]
        records = read_topic(own.address, topic, expect=15)
        assert {headers_of(r)["ce_id"] for r in records} >= {
            str(r.event_id) for r in after_restart
        }
        assert_complete_and_ordered(records, after_restart)
    finally:
        own.stop()


@pytest.mark.postgres_only
def test_relay_reopens_its_database_connections_after_they_are_killed(
    broker, topic, start_process
):
    relay = start_process("run_relay")
    assert relay.wait_for_output("producer ready")
    keys = new_keys(3)
    enqueue_events(make_events(keys, 1))
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=20)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE 'outbox-relay%%' AND datname = current_database()"
        )
        assert cursor.fetchone()[0] >= 2

    enqueue_events(make_events(keys, 2))
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=30), (
        relay.output
    )
    assert relay.proc.poll() is None
    records = read_topic(broker.address, topic, expect=9)
    assert_complete_and_ordered(records)
    assert relay.terminate() == 0
