"""An independent read of a topic, as a read_committed consumer of its own sees it."""

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, TopicPartition

from messaging import config as kafka


@dataclass
class Record:
    partition: int
    offset: int
    key: str
    event_id: str


def read_topic(brokers: str, topic: str, *, timeout: float = 60.0) -> list[Record]:
    """Every record of ``topic`` from the beginning to its end, in offset order per partition."""
    consumer = Consumer(  # read_committed, no auto commit, like the consumers
        kafka.consumer_config(
            f"chaos-verdict-{uuid.uuid4().hex[:8]}",
            **{"bootstrap.servers": brokers, "enable.partition.eof": True},
        )
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            return []
        partitions = sorted(metadata.partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        return _drain(consumer, set(partitions), timeout)
    finally:
        consumer.close()


def _drain(consumer, open_partitions: set[int], timeout: float) -> list[Record]:
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while open_partitions and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                open_partitions.discard(msg.partition())
            continue
        headers = dict(msg.headers() or [])
        ce_id = headers.get("ce_id", b"").decode()
        key = (msg.key() or b"").decode()
        records.append(Record(msg.partition(), msg.offset(), key, ce_id))
    if open_partitions:
        raise TimeoutError(f"partitions {sorted(open_partitions)} not read to the end")
    return records
