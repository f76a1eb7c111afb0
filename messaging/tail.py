"""Read records: follow a topic (``kafka tail``), peek at the latest dead letters."""

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from core.loops import StopOnSignal
from messaging import deadletter
from messaging.config import admin_client, cluster_metadata, reader, topic_metadata
from messaging.offsets import watermarks

logger = logging.getLogger(__name__)


@dataclass
class Record:
    key: str | None
    partition: int
    offset: int
    headers: dict[str, str]
    value: str


class TopicTail(StopOnSignal):
    """Read a topic, from its end or beginning, until stopped or enough records came."""

    loop_name = "tail"
    stop_message = "stopping"
    logger = logger

    def __init__(
        self,
        *,
        topic: str,
        from_beginning: bool = False,
        max_messages: int | None = None,
        idle_timeout: float | None = None,
        timeout: float = 10,
    ):
        self.topic = topic
        self.from_beginning = from_beginning
        self.max_messages = max_messages
        self.idle_timeout = idle_timeout
        self.timeout = timeout
        self.running = True
        self.consumer: Consumer | None = None

    def stop(self) -> None:
        self.running = False

    def open(self) -> Consumer:
        """Assign the partitions at their start offsets; records arrive from here on."""
        self.consumer = reader(**{"enable.partition.eof": False})
        self.consumer.assign(self.start_offsets())
        return self.consumer

    def start_offsets(self) -> list[TopicPartition]:
        meta = topic_metadata(admin_client(), self.topic, self.timeout)
        parts = sorted(meta.partitions)
        if self.from_beginning:
            return [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts]
        marks = watermarks(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts]
        )
        return [
            TopicPartition(self.topic, p, marks.get((self.topic, p), (0, 0))[1])
            for p in parts
        ]

    def records(self) -> Iterator[Record]:
        consumer = self.consumer or self.open()
        seen = 0
        last_seen = time.monotonic()
        try:
            while self.running and not self._done(seen, last_seen):
                for msg in consumer.consume(100, timeout=0.2):
                    if msg.error() is not None:
                        continue
                    yield to_record(msg)
                    seen += 1
                    last_seen = time.monotonic()
                    if self.max_messages is not None and seen >= self.max_messages:
                        return
        finally:
            consumer.close()

    def _done(self, seen: int, last_seen: float) -> bool:
        if self.max_messages is not None and seen >= self.max_messages:
            return True
        idle = time.monotonic() - last_seen
        return self.idle_timeout is not None and idle > self.idle_timeout


def to_record(msg) -> Record:
    return Record(
        key=_text(msg.key()),
        partition=msg.partition(),
        offset=msg.offset(),
        headers={k: _text(v) or "" for k, v in (msg.headers() or [])},
        value=_text(msg.value()) or "",
    )


def _text(raw: bytes | str | None) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.hex()


@dataclass
class DeadLetters:
    total: int
    latest: list[Record]


def dead_letters(*, topic: str, limit: int = 20, timeout: float = 5) -> DeadLetters:
    """How many records the dead-letter topic holds, and the latest ``limit`` of them."""
    meta = cluster_metadata(admin_client(), timeout).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        return DeadLetters(0, [])
    parts = [
        TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)
    ]
    marks = watermarks(parts, timeout=timeout)
    total = sum(high - low for low, high in marks.values())
    wanted = {(topic, p): high for (_, p), (low, high) in marks.items() if high > low}
    if not wanted:
        return DeadLetters(total, [])
    starts = [
        TopicPartition(topic, p, max(marks[(topic, p)][0], high - limit))
        for (_, p), high in wanted.items()
    ]
    records = _read_until(starts, wanted, timeout)
    records.sort(key=lambda r: r.headers.get(deadletter.TIME, ""), reverse=True)
    return DeadLetters(total, records[:limit])


def _read_until(starts, ends: dict, timeout: float) -> list[Record]:
    """Records from ``starts`` until each partition reached its end offset in ``ends``."""
    consumer = reader(**{"enable.partition.eof": False})
    records = []
    try:
        consumer.assign(starts)
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.1):
                if msg.error() is not None:
                    continue
                records.append(to_record(msg))
                key = (msg.topic(), msg.partition())
                if msg.offset() + 1 >= ends.get(key, 0):
                    ends.pop(key, None)
    finally:
        consumer.close()
    return records
