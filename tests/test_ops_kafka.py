"""`manage.py kafka`: the seed's Kafka operations through the project's own clients."""

import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from core.tables import render_table
from messaging.offsets import partition_lag
from messaging.topics import ensure_topics
from tests.conftest import ROOT
from tests.kafka_utils import table_rows

# -- pure logic ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("committed", "end", "start", "lag"),
    [
        (40, 100, 0, 60),  # the usual case: end - committed
        (100, 100, 0, 0),  # caught up
        (None, 100, 0, 100),  # never committed: reads from the start
        (None, 100, 30, 70),  # ... which retention moved to 30
        (10, 100, 30, 70),  # committed offset deleted by retention: resumes at start
        (120, 100, 0, 0),  # commit ahead of a stale end offset: never negative
        (40, None, 0, None),  # end unknown: lag unknown, not a guess
        (-1001, 50, 5, 45),  # librdkafka's OFFSET_INVALID means no commit
    ],
)
def test_partition_lag_is_end_minus_committed_position(committed, end, start, lag):
    assert partition_lag(committed=committed, end=end, start=start) == lag


def test_render_table_aligns_columns_and_shows_unknown_as_dash():
    text = render_table(["TOPIC", "LAG"], [("appointments", 5), ("a", None)])
    assert text.splitlines() == [
        "TOPIC         LAG",
        "appointments  5",
        "a             -",
    ]


# -- against the broker ----------------------------------------------------------


def kafka_cmd(proc_env, *args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "kafka", *args],
        cwd=ROOT,
        env=proc_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def produce_batches(
    address: str, topic: str, per_partition: dict[int, int], batches: int = 3
):
    """Produce in several multi-record batches, where a wrong ListOffsets shows.

    The topic is made first (3 partitions): Apache Kafka here does not create topics
    on first use (Tansu makes a missing one with 4).
    """
    ensure_topics([topic], admin=AdminClient({"bootstrap.servers": address}))
    producer = Producer({"bootstrap.servers": address, "linger.ms": 50})
    for b in range(batches):
        for partition, count in per_partition.items():
            for i in range(count // batches):
                producer.produce(
                    topic,
                    partition=partition,
                    key=f"key-{partition}-{b}-{i}".encode(),
                    value=b'{"appointmentId": "x"}',
                    headers=[("ce_type", "appointment.booked")],
                )
        assert producer.flush(10) == 0


def test_topics_create_list_and_describe(broker, proc_env, topic):
    created = kafka_cmd(proc_env, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert table_rows(created.stdout, "TOPIC") == [
        [topic, "3", "1", "created"],
        [f"{topic}.dlq", "3", "1", "created"],
    ]
    again = kafka_cmd(proc_env, "topics", "create", topic)
    assert table_rows(again.stdout, "TOPIC") == [[topic, "3", "1", "exists"]]

    listed = kafka_cmd(proc_env, "topics", "list")
    assert [topic, "3", "1"] in table_rows(listed.stdout, "TOPIC")

    produce_batches(broker.address, topic, {0: 6, 1: 3})
    described = kafka_cmd(proc_env, "topics", "describe", topic)
    assert described.returncode == 0, described.stderr
    rows = table_rows(described.stdout, "PARTITION")
    assert [(r[0], r[4], r[5]) for r in rows] == [
        ("0", "0", "6"),
        ("1", "0", "3"),
        ("2", "0", "0"),
    ]


def test_describe_of_missing_topic_fails_without_creating_it(broker, proc_env):
    name = f"missing-{uuid.uuid4().hex[:8]}"
    result = kafka_cmd(proc_env, "topics", "describe", name)
    assert result.returncode == 1
    assert f"topic '{name}' does not exist" in result.stderr
    assert name not in kafka_cmd(proc_env, "topics", "list").stdout


def test_groups_describe_shows_committed_end_offsets_and_lag(broker, proc_env, topic):
    assert kafka_cmd(proc_env, "topics", "create", topic).returncode == 0
    produce_batches(broker.address, topic, {0: 9, 1: 6, 2: 3})
    group = f"group-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {
            "bootstrap.servers": broker.address,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 6)],
            asynchronous=False,
        )
    finally:
        consumer.close()

    listed = kafka_cmd(proc_env, "groups", "list")
    assert listed.returncode == 0, listed.stderr
    assert group in [r[0] for r in table_rows(listed.stdout, "GROUP")]

    described = kafka_cmd(proc_env, "groups", "describe", group)
    assert described.returncode == 0, described.stderr
    rows = table_rows(described.stdout, "TOPIC")
    # partition, committed, end, lag: partition 2 has no commit and is read from 0
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        ("0", "4", "9", "5"),
        ("1", "6", "6", "0"),
        ("2", "-", "3", "3"),
    ]
    assert all(r[0] == topic for r in rows)
    assert "TOTAL LAG 8" in described.stdout


def test_tail_prints_key_partition_offset_headers_and_value(broker, proc_env, topic):
    produce_batches(broker.address, topic, {1: 3}, batches=1)
    result = kafka_cmd(
        proc_env, "tail", topic, "--from-beginning", "--max-messages", "2"
    )
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout, "KEY")
    assert [r[:5] for r in rows] == [
        ["key-1-0-0", "1", "0", "ce_type=appointment.booked", '{"appointmentId":'],
        ["key-1-0-1", "1", "1", "ce_type=appointment.booked", '{"appointmentId":'],
    ]
    assert "Processed a total of 2 messages" in result.stderr


def test_tail_without_from_beginning_shows_only_new_records(
    broker, proc_env, topic, start_process
):
    produce_batches(broker.address, topic, {0: 3}, batches=1)
    tail = start_process("kafka", "tail", topic, "--max-messages", "1", name="tail")
    assert tail.wait_for_output("HEADERS", timeout=30), tail.output
    producer = Producer({"bootstrap.servers": broker.address})
    producer.produce(topic, partition=0, key=b"the-new-one", value=b"{}")
    producer.flush(10)
    deadline = time.monotonic() + 30
    while tail.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tail.proc.returncode == 0, tail.output
    assert "the-new-one" in tail.output and "key-0-0-0" not in tail.output


def test_commands_name_the_broker_when_it_is_unreachable(proc_env):
    from tests.broker import Broker

    down = Broker()  # a free port with nothing listening
    result = kafka_cmd(
        {**proc_env, "KAFKA_BROKERS": down.address}, "topics", "list", "--timeout", "2"
    )
    assert result.returncode == 1
    assert f"cannot reach the broker at {down.address}" in result.stderr


def test_groups_reset_offsets_moves_a_stopped_group_to_the_earliest(
    broker, proc_env, topic
):
    from tests.consumer_kit import committed_offsets

    assert kafka_cmd(proc_env, "topics", "create", topic).returncode == 0
    produce_batches(broker.address, topic, {0: 6, 1: 3})
    group = f"group-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": broker.address, "group.id": group})
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 2)],
            asynchronous=False,
        )
    finally:
        consumer.close()
    assert committed_offsets(broker.address, group, topic) == {0: 3, 1: 2}

    bad = kafka_cmd(
        proc_env, "groups", "reset-offsets", group, "--to", "soon", "--topic", topic
    )
    assert bad.returncode == 1 and "--to: 'soon' is not" in bad.stderr

    reset = kafka_cmd(
        proc_env,
        "groups",
        "reset-offsets",
        group,
        "--to",
        "earliest",
        "--topic",
        topic,
    )
    assert reset.returncode == 0, reset.stderr
    assert f"group {group}: offsets reset to earliest" in reset.stdout
    assert committed_offsets(broker.address, group, topic) == {0: 0, 1: 0, 2: 0}
