"""Read what really reached a topic, for assertions."""

import os
import time
import uuid

from confluent_kafka import Consumer, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec


def read_topic(brokers: str, topic: str, *, expect: int, timeout: float = 30.0) -> list:
    """Read a topic from the beginning until ``expect`` records arrived or time ran out."""
    admin = AdminClient({"bootstrap.servers": brokers})
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(topic, timeout=10).topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            break
        if time.monotonic() > deadline:
            return []
        time.sleep(0.2)
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"test-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    records = []
    try:
        while len(records) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.2):
                if msg.error() is None:
                    records.append(msg)
        records += read_to_end(consumer, brokers, topic, list(meta.partitions))
    finally:
        consumer.close()
    return records


def end_offsets(brokers: str, topic: str, partitions, committed: bool) -> dict:
    """Per partition: the last stable offset (committed) or the high watermark."""
    admin = AdminClient({"bootstrap.servers": brokers})
    level = (
        IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    )
    specs = {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}
    futures = admin.list_offsets(specs, isolation_level=level, request_timeout=10)
    return {tp.partition: f.result().offset for tp, f in futures.items()}


def read_to_end(consumer, brokers: str, topic: str, partitions, timeout=15) -> list:
    """Whatever more a read_committed reader gets, read until there can be no more.

    Apache Kafka: until no transaction is open (the last stable offset is the high
    watermark) and the reader's position reached it: exact, without sleeping.
    Tansu answers ListOffsets wrongly (DESIGN.md section 9): a short extra read.
    """
    more = []
    if os.environ.get("TEST_BROKER") != "kafka":
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            more += [m for m in consumer.consume(500, timeout=0.1) if m.error() is None]
        return more
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        high = end_offsets(brokers, topic, partitions, committed=False)
        stable = end_offsets(brokers, topic, partitions, committed=True)
        positions = consumer.position([TopicPartition(topic, p) for p in partitions])
        at = {tp.partition: max(tp.offset, 0) for tp in positions}
        if stable == high and all(at[p] >= high[p] for p in partitions):
            return more
        more += [m for m in consumer.consume(500, timeout=0.1) if m.error() is None]
    raise AssertionError(
        f"{topic}: the reader never reached the end ({high}, {stable})"
    )


def headers_of(msg) -> dict[str, str]:
    return {
        k: (v.decode() if isinstance(v, bytes) else v) for k, v in (msg.headers() or [])
    }


def committed_total(brokers: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets on a topic: how many records it finished."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = consumer.committed(
            [TopicPartition(topic, p) for p in partitions], timeout=10
        )
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in offsets)


def table_rows(text: str, first_header: str) -> list[list[str]]:
    """The rows of the table whose header line starts with first_header."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows
