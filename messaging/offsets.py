"""Watermarks and lag, computed once for the kafka command, the consumer and health.

End offsets are read from fetch responses (the high watermark each one carries),
never from ListOffsets: that is right on Apache Kafka and also on the Tansu broker
used in development, whose ListOffsets answer is wrong.
"""

import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from messaging.config import OpsError, reader


def partition_lag(
    *, committed: int | None, end: int | None, start: int = 0
) -> int | None:
    """Records a group has still to read in one partition.

    ``committed`` is the group's committed offset (the next record it will read),
    ``end`` the partition's end offset (high watermark), ``start`` its first offset.
    A group without a commit reads from ``start`` (auto.offset.reset=earliest).
    Unknown end: unknown lag. Never negative (a commit can be ahead of a stale end).
    """
    if end is None:
        return None
    position = committed if committed is not None and committed >= 0 else start
    return max(0, end - max(position, start))


@dataclass
class PartitionOffsets:
    topic: str
    partition: int
    committed: int | None
    end: int | None
    start: int = 0
    member: str | None = None
    host: str | None = None
    client_id: str | None = None

    @property
    def lag(self) -> int | None:
        return partition_lag(committed=self.committed, end=self.end, start=self.start)


def watermarks(
    partitions: list[TopicPartition], *, timeout: float = 10
) -> dict[tuple[str, int], tuple[int, int]]:
    """(low, high) watermark of each partition, taken from fetch responses.

    Each partition is fetched once from its given offset (or its beginning): the
    answer carries the high watermark, whether it holds records or reports the end.
    """
    if not partitions:
        return {}
    consumer = reader()
    try:
        consumer.assign(
            [
                TopicPartition(
                    tp.topic,
                    tp.partition,
                    tp.offset if tp.offset >= 0 else OFFSET_BEGINNING,
                )
                for tp in partitions
            ]
        )
        pending = _fetch_once(consumer, partitions, timeout)
        result = {}
        for tp in partitions:
            if (tp.topic, tp.partition) in pending:
                continue
            low, high = consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), cached=True
            )
            result[(tp.topic, tp.partition)] = (max(low, 0), high)
        return result
    finally:
        consumer.close()


def _fetch_once(consumer, partitions, timeout: float) -> set[tuple[str, int]]:
    """Consume until every partition answered once; return those that did not."""
    pending = {(tp.topic, tp.partition) for tp in partitions}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for msg in consumer.consume(500, timeout=0.1):
            err = msg.error()
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                if err.fatal():
                    raise OpsError(f"cannot read offsets: {err.str()}")
                continue
            key = (msg.topic(), msg.partition())
            if key in pending:
                pending.discard(key)
                consumer.pause([TopicPartition(*key)])
    return pending
