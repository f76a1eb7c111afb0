"""A relay killed with an open Kafka transaction, on Apache Kafka's read_committed.

The relay is SIGKILLed between producing a batch into its shard's transaction and
committing it (tests/open_transaction_relay.py holds it there). Its records are in
the log, but no read_committed reader may ever see them; until the transaction ends,
every later record of its partitions is held back too (the last stable offset stays
below the high watermark). It ends when a standby's init_transactions() fences the
dead producer, or when KAFKA_TRANSACTION_TIMEOUT_MS runs out; then the rows, never
marked, go out again in the next leader's transaction, once.

kafka_only: Tansu shows aborted records to read_committed readers and holds nothing
back behind an open transaction (DESIGN.md section 9), so none of this shows there.
"""

import signal
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from notifications.models import Notification, ProcessedEvent
from relay.models import OutboxEvent
from tests.conftest import wait_until
from tests.consumer_kit import booked_events, make_people, run_consumer
from tests.kafka_utils import end_offsets, headers_of, read_topic
from tests.relay_support import assert_complete_and_ordered, enqueue_events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka_only]

PARTITIONS = [0, 1, 2]
OPEN_TRANSACTION = (
    "shell",
    "-c",
    "from tests.open_transaction_relay import main; main()",
)


def make_topics(broker, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.address})
    new = [NewTopic(t, len(PARTITIONS), 1) for t in (topic, f"{topic}.dlq")]
    for future in admin.create_topics(new).values():
        future.result(30)


def stuck_relay(start_process, env=None):
    """A relay that produced every pending row into its transaction and stopped."""
    proc = start_process(*OPEN_TRANSACTION, env=env, name="stuck-relay")
    assert proc.wait_for_output("OPEN TRANSACTION", timeout=60), proc.output
    return proc


def held_back(broker, topic) -> bool:
    """Whether an open transaction holds read_committed readers of the topic back."""
    high = end_offsets(broker.address, topic, PARTITIONS, committed=False)
    stable = end_offsets(broker.address, topic, PARTITIONS, committed=True)
    return stable != high


def kill(proc) -> float:
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait(10)
    return time.monotonic()


def seconds_until_released(broker, topic, since: float, timeout: float) -> float:
    """Seconds from ``since`` until no transaction holds the topic's readers back."""
    assert wait_until(lambda: not held_back(broker, topic), timeout, interval=0.1)
    return time.monotonic() - since


def read_uncommitted(broker, topic) -> list:
    """Every data record in the log, aborted ones included (no commit markers)."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.address,
            "group.id": f"uncommitted-{uuid.uuid4()}",
            "isolation.level": "read_uncommitted",
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in PARTITIONS])
    records, ended = [], set()
    deadline = time.monotonic() + 30
    try:
        while len(ended) < len(PARTITIONS) and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.2):
                if msg.error() is None:
                    records.append(msg)
                elif msg.error().code() == msg.error()._PARTITION_EOF:
                    ended.add(msg.partition())
    finally:
        consumer.close()
    return records


def assert_each_event_once(broker, topic, count: int) -> None:
    committed = read_topic(broker.address, topic, expect=count)
    ids = [headers_of(r)["ce_id"] for r in committed]
    assert len(ids) == len(set(ids)) == count
    assert_complete_and_ordered(committed)
    # The dead relay's records are in the log, aborted: a read_uncommitted reader
    # finds every event twice, a read_committed one once.
    everything = [headers_of(r)["ce_id"] for r in read_uncommitted(broker, topic)]
    assert sorted(everything) == sorted(ids * 2)


def test_a_relay_killed_before_its_commit_is_fenced_by_the_standby_and_read_once(
    broker, topic, start_process, make_user
):
    make_topics(broker, topic)
    enqueue_events(booked_events(make_people(make_user), 12))
    stuck = stuck_relay(start_process)
    assert held_back(broker, topic), "the open transaction holds nothing back"
    standby = start_process("run_relay", name="standby")
    consumer = run_consumer(start_process, "--no-email")
    assert standby.wait_for_output("relay: started", timeout=30), standby.output
    assert consumer.wait_for_output("consumer: assigned", timeout=40), consumer.output
    assert "leading shard" not in standby.output  # the stuck relay still leads
    assert ProcessedEvent.objects.count() == 0

    killed_at = kill(stuck)
    # The standby takes the shard (its lock is free at once) and its
    # init_transactions() aborts the dead relay's transaction: far sooner than the
    # transaction timeout (60 s by default).
    fenced_in = seconds_until_released(broker, topic, killed_at, timeout=30)
    assert standby.wait_for_output("producer ready", timeout=5), standby.output
    assert fenced_in < 15, fenced_in
    print(f"open transaction fenced {fenced_in:.2f} s after the kill")

    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=30)
    assert_each_event_once(broker, topic, 12)
    assert wait_until(lambda: ProcessedEvent.objects.count() == 12, timeout=30), (
        consumer.output
    )
    assert consumer.terminate() == 0 and standby.terminate() == 0
    # The consumer never saw the aborted copies: nothing to skip, 2 notes per event.
    assert "duplicate" not in consumer.output
    assert Notification.objects.count() == 24


def test_without_a_standby_the_open_transaction_holds_readers_until_its_timeout(
    broker, topic, start_process, make_user
):
    make_topics(broker, topic)
    enqueue_events(booked_events(make_people(make_user), 6))
    timeout_s = 4.0
    env = {
        "KAFKA_TRANSACTION_TIMEOUT_MS": str(int(timeout_s * 1000)),
        "KAFKA_MESSAGE_TIMEOUT_MS": "3000",
    }
    stuck = stuck_relay(start_process, env=env)
    killed_at = kill(stuck)
    assert held_back(broker, topic)
    released_in = seconds_until_released(broker, topic, killed_at, timeout=30)
    # The broker aborts a transaction older than its timeout at its next check
    # (transaction.abort.timed.out.transaction.cleanup.interval.ms: 1 s in the
    # test broker, 10 s by default).
    assert timeout_s - 1.0 <= released_in <= timeout_s + 1.0 + 3.0, released_in
    print(f"open transaction timed out {released_in:.2f} s after the kill")
    assert read_topic(broker.address, topic, expect=0) == []

    relay = start_process("run_relay", name="next-leader")
    assert relay.wait_for_output("producer ready", timeout=30), relay.output
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=30)
    assert relay.terminate() == 0
    assert_each_event_once(broker, topic, 6)
