"""Failures no other test reaches, one at a time (the chaos run combines them under load).

- the email sender SIGKILLed in the middle of a round of sending;
- the relay's database connection cut while it marks rows published.
"""

import signal
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from notifications.models import EmailDelivery, Notification
from relay.models import OutboxEvent
from tests.conftest import wait_until
from tests.email_support import (
    kill_sender_mid_round,
    pending_deliveries,
    resend_all,
    slow_sink_env,
)
from tests.kafka_utils import headers_of, read_topic
from tests.relay_support import (
    assert_complete_and_ordered,
    enqueue_events,
    make_events,
    new_keys,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_email_sender_killed_mid_send_loses_nothing_and_sends_again(
    make_user, start_process
):
    deliveries = pending_deliveries(make_user, 60)
    sink, env = slow_sink_env(30)
    try:
        kill_sender_mid_round(start_process, sink, env)
        # A message whose data was in before the kill is still counted (the sink's
        # delay): sample once the killed session has ended.
        assert wait_until(lambda: sink.open_sessions == 0, timeout=10)
        received_at_kill = sink.total

        # Nothing lost: every delivery is sent or pending, none failed.
        statuses = set(EmailDelivery.objects.values_list("status", flat=True))
        assert statuses <= {"sent", "pending"}
        claimed = EmailDelivery.objects.filter(status="pending", attempts=1)
        assert (
            claimed.count() >= 1
        )  # the round in hand: claimed, maybe sent, not marked
        # They wait out the sender's 5-minute lease; move them to its end.
        assert all(d.next_attempt_at > timezone.now() for d in claimed)
        claimed.update(next_attempt_at=timezone.now() - timedelta(seconds=1))

        resend_all(start_process, env)
    finally:
        sink.stop()
    # At least once: every delivery reached the sink; the killed round's ones may twice.
    addresses = {d.notification.recipient.email for d in deliveries}
    assert {rcpt for rcpt, _, _ in sink.received} == addresses
    assert sum(sink.received.values()) == sink.total >= len(deliveries)
    duplicates = sink.total - len(deliveries)
    assert 0 <= duplicates <= received_at_kill


MARK_SLOWLY = """
CREATE FUNCTION chaos_slow_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.3);
    RETURN NEW;
END $$;
CREATE TRIGGER chaos_slow_mark BEFORE UPDATE OF published_at ON {table}
    FOR EACH ROW WHEN (OLD.published_at IS NULL AND NEW.published_at IS NOT NULL)
    EXECUTE FUNCTION chaos_slow_mark();
"""
NO_SLOW_MARK = """
DROP TRIGGER IF EXISTS chaos_slow_mark ON {table};
DROP FUNCTION IF EXISTS chaos_slow_mark();
"""
CUT_MARKING = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE application_name = 'outbox-relay-mark' AND state = 'active'
  AND datname = current_database()
"""


def sql(statement: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(statement.format(table=OutboxEvent._meta.db_table))
        return cursor.fetchone()[0] if cursor.description else 0


@pytest.mark.postgres_only
def test_relay_cut_while_marking_publishes_the_rows_again(broker, topic, start_process):
    relay = start_process("run_relay")
    assert relay.wait_for_output("producer ready")
    sql(MARK_SLOWLY)  # each mark now takes 0.3 s per row: time to cut it
    try:
        enqueue_events(make_events(new_keys(3), 2))
        cuts, deadline = 0, time.monotonic() + 30
        while "could not mark" not in relay.output and time.monotonic() < deadline:
            cuts += sql(
                CUT_MARKING
            )  # every attempt, until the relay gives the marks up
            time.sleep(0.05)
        assert "could not mark" in relay.output, relay.output
        assert cuts >= 3  # three attempts, each cut mid-UPDATE
    finally:
        sql(NO_SLOW_MARK)
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=30)
    assert relay.proc.poll() is None, relay.output

    # Published again after the failed mark: every event at least twice, in order.
    records = read_topic(broker.address, topic, expect=12, timeout=20)
    ids = [headers_of(r)["ce_id"] for r in records]
    rows = list(OutboxEvent.objects.order_by("seq"))
    assert all(ids.count(str(row.event_id)) >= 2 for row in rows), ids
    assert_complete_and_ordered(records)
    for row in rows:  # the marks name the record a reader finds there
        at = next(
            r
            for r in records
            if (r.partition(), r.offset()) == (row.partition, row.offset)
        )
        assert headers_of(at)["ce_id"] == str(row.event_id)
    assert relay.terminate() == 0


# -- the broker wiped, then outbox_replay -------------------------------------------


def book_some(doctor, make_user, n: int, first_day: int = 0) -> list:
    from datetime import date, time

    from appointments.services import appointment_book

    booked, day = [], date.today() + timedelta(days=7 + first_day)
    while len(booked) < n:
        day += timedelta(days=1)
        if day.weekday() < 5:
            booked.append(
                appointment_book(
                    patient=make_user(), doctor=doctor, date=day, time_slot=time(10)
                )
            )
    return booked


def test_broker_wiped_then_outbox_replay_consumers_skip_what_they_had(
    doctor, make_user, start_process
):
    from django.core.management import call_command

    from notifications.models import ProcessedEvent
    from tests.broker import Broker
    from tests.consumer_kit import run_consumer

    own = Broker().start()
    env = {"KAFKA_BROKERS": own.address}
    try:
        since = timezone.now()
        relay = start_process("run_relay", env=env)
        consumer = run_consumer(start_process, "--no-email", env=env)
        book_some(doctor, make_user, 5)
        assert wait_until(lambda: ProcessedEvent.objects.count() == 5, timeout=60), (
            consumer.output
        )

        own.stop()  # memory only: it comes back empty, topics and offsets gone
        own.start()
        book_some(doctor, make_user, 3, first_day=30)
        call_command("outbox_replay", "--since", since.isoformat(), "--no-wait")
        assert wait_until(lambda: ProcessedEvent.objects.count() == 8, timeout=60), (
            consumer.output + relay.output
        )
        assert wait_until(
            lambda: not OutboxEvent.objects.pending().exists(), timeout=30
        )
        skipped = wait_until(lambda: "skipped" in consumer.output, timeout=20)
        assert skipped, consumer.output
        # Nothing more can arrive: no row is pending (a relay never sends a marked
        # row again), and the topic holds exactly these 8 records, read to its end.
        records = read_topic(own.address, OutboxEvent.objects.first().topic, expect=8)
        assert len(records) == 8
        assert_complete_and_ordered(records)
        assert ProcessedEvent.objects.count() == 8
        assert Notification.objects.count() == 16
        assert set(Notification.objects.values_list("event_id", flat=True)) == set(
            OutboxEvent.objects.values_list("event_id", flat=True)
        )
        assert relay.terminate() == 0
        assert consumer.terminate() == 0
    finally:
        own.stop()


# -- per-key order through a rebalance and a restart ------------------------------------


def test_per_key_order_holds_through_a_rebalance_and_a_restart(
    broker, topic, make_user, start_process
):
    from tests.consumer_kit import (
        committed_offsets,
        event_record,
        produce_slowly,
        run_consumer,
    )

    patient, doctor_user = make_user(), make_user()
    keys = [str(uuid.uuid4()) for _ in range(6)]
    records = [
        event_record(
            patient_id=patient.id,
            doctor_user_id=doctor_user.id,
            appointment_id=keys[i % len(keys)],
            event_type="appointment.rescheduled",
            data={"previousDate": "2030-05-05", "previousTimeSlot": "09:00"},
        )
        for i in range(600)
    ]
    first = run_consumer(start_process, "--no-email", name="first")
    assert first.wait_for_output("assigned")
    produce_slowly(broker.address, topic, records[:200], per_second=200)
    second = run_consumer(start_process, "--no-email", name="second")  # a rebalance
    produce_slowly(broker.address, topic, records[200:400], per_second=200)
    first.kill()  # mid-stream; restarted as a supervisor would
    again = run_consumer(start_process, "--no-email", name="again")
    produce_slowly(broker.address, topic, records[400:], per_second=200)

    assert wait_until(
        lambda: Notification.objects.count() == 2 * len(records), timeout=90
    ), second.output + again.output
    # Every record applied and its offset committed (the killed member's partitions
    # too, once its session expired): no member can be handed a record again. The
    # topic holds just these records, offsets 0.. without gaps (no transactions).
    assert wait_until(
        lambda: (
            sum(committed_offsets(broker.address, f"group-{topic}", topic).values())
            == len(records)
        ),
        timeout=60,
    ), second.output + again.output
    assert Notification.objects.count() == 2 * len(records)
    for key in keys:
        sent = [
            dict(r["headers"])["ce_id"].decode()
            for r in records
            if r["key"] == key.encode()
        ]
        for user in (patient, doctor_user):
            got = Notification.objects.filter(appointment_id=key, recipient=user)
            ids = [
                str(e) for e in got.order_by("id").values_list("event_id", flat=True)
            ]
            assert ids == sent, key
    assert second.terminate() == 0
    assert again.terminate() == 0


# -- a leader stalled with claimed rows and an open Kafka transaction ----------------------


def own_broker(tmp_path):
    """A broker of this test's own (it gets frozen): TEST_BROKER's kind, Tansu by default."""
    import os

    from devtools.brokers import launcher

    return launcher(os.environ.get("TEST_BROKER", "tansu"), tmp_path).start()


@pytest.mark.postgres_only
def test_stalled_leader_with_an_open_transaction_marks_nothing_and_is_fenced(
    topic, start_process, tmp_path
):
    own = own_broker(tmp_path)
    env = {
        "KAFKA_BROKERS": own.address,
        "OUTBOX_LEASE_TIMEOUT": "2s",
        "KAFKA_MESSAGE_TIMEOUT_MS": "5000",
    }
    try:
        leader = start_process("run_relay", env=env, name="leader")
        assert leader.wait_for_output("producer ready")
        standby = start_process("run_relay", env=env, name="standby")
        assert standby.wait_for_output("relay: started")
        keys = new_keys(3)
        enqueue_events(make_events(keys, 1))  # warm up: topic made, producer connected
        assert wait_until(lambda: not OutboxEvent.objects.pending().exists())

        own.process.signal(signal.SIGSTOP)  # the broker holds the commit back...
        enqueue_events(make_events(keys, 2))
        time.sleep(1.5)  # ...while the leader claims, begins, produces and commits
        leader.proc.send_signal(signal.SIGSTOP)  # stalled with all of that in hand
        own.process.signal(signal.SIGCONT)
        assert OutboxEvent.objects.pending().count() == 6
        took_over = wait_until(lambda: "leading shard 0" in standby.output, timeout=30)
        assert took_over, standby.output
        assert wait_until(
            lambda: not OutboxEvent.objects.pending().exists(), timeout=30
        )
        marks = set(OutboxEvent.objects.values_list("seq", "partition", "offset"))

        leader.proc.send_signal(signal.SIGCONT)
        # The old leader finds itself fenced (its commit) or its lease gone, and drops
        # the shard with what it had in hand: from then on it cannot mark anything.
        dropped = wait_until(
            lambda: "fenced" in leader.output or "leadership lost" in leader.output,
            timeout=30,
        )
        assert dropped, leader.output
        assert (
            set(OutboxEvent.objects.values_list("seq", "partition", "offset")) == marks
        )
        records = read_committed(own.address, topic)
        assert_complete_and_ordered(records)
        ids = [headers_of(r)["ce_id"] for r in records]
        at = {(r.partition(), r.offset()): headers_of(r)["ce_id"] for r in records}
        for row in OutboxEvent.objects.all():  # every mark names a committed record
            assert at[(row.partition, row.offset)] == str(row.event_id)
        if (
            own.read_committed_hides_aborted
        ):  # Kafka: the old leader's batch is invisible
            assert len(ids) == len(set(ids)) == 9, ids
        assert leader.terminate() == 0
        assert standby.terminate() == 0
    finally:
        own.stop()


def read_committed(address: str, topic: str) -> list:
    """Every record a read_committed reader sees, to the end of each partition."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": address,
            "group.id": f"reader-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records, open_ = [], set(partitions)
        deadline = time.monotonic() + 30
        while open_ and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() and msg.error().code() == KafkaError._PARTITION_EOF:
                open_.discard(msg.partition())
            elif not msg.error():
                records.append(msg)
        assert not open_, f"partitions {open_} not read to the end"
        return records
    finally:
        consumer.close()
