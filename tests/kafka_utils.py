"""Read what really reached a topic, for assertions."""

import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient


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
        # a short extra read shows whether more than expected arrived
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            records += [m for m in consumer.consume(500, timeout=0.1) if m.error() is None]
    finally:
        consumer.close()
    return records


def headers_of(msg) -> dict[str, str]:
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (msg.headers() or [])}


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
