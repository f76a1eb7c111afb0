"""Replay dead letters: send each back to the topic it came from, after a fix.

A replay reads the dead-letter topic with its own consumer group
(``<CONSUMER_GROUP>.dlq-replay``) from where the last replay stopped up to the end,
produces each record to its original topic with its key, value and original
headers, waits for the broker's acknowledgements and only then commits. A record
replayed twice (a crash between produce and commit) is a duplicate event id, which
the consumer skips.
"""

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_STORED,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from django.conf import settings

from core.loops import produce
from messaging import deadletter
from messaging.config import admin_client, consumer_config, producer_config


class ReplayFailed(Exception):
    """The dead-letter topic could not be read, or the broker did not take the records."""


@dataclass
class DeadLetterRecord:
    topic: str  # where it goes back to
    partition: int  # in the dead-letter topic
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list
    error: str


@dataclass
class ReplayReport:
    records: list[DeadLetterRecord] = field(default_factory=list)
    replayed: int = 0
    skipped: int = 0  # no original topic header: cannot be routed

    def by_topic_and_error(self) -> Counter:
        return Counter((r.topic or "?", r.error.split(":")[0]) for r in self.records)


def replay_group() -> str:
    return f"{settings.CONSUMER['GROUP']}.dlq-replay"


class DeadLetterReplay:
    def __init__(
        self,
        *,
        dlq_topic: str | None = None,
        group: str | None = None,
        timeout: float = 30,
        progress: Callable[[int, int], None] | None = None,
    ):
        self.dlq_topic = dlq_topic or settings.CONSUMER["DLQ_TOPIC"]
        self.group = group or replay_group()
        self.timeout = timeout
        self.progress = progress or (lambda done, total: None)

    def run(self, *, dry_run: bool = False) -> ReplayReport:
        consumer = Consumer(
            consumer_config(self.group, **{"enable.partition.eof": True})
        )
        try:
            report, positions = self._read(consumer)
            if not dry_run and report.records:
                self._produce(report)
            if not dry_run and positions:
                consumer.commit(offsets=positions, asynchronous=False)
        finally:
            consumer.close()
        return report

    def _read(self, consumer) -> tuple[ReplayReport, list[TopicPartition]]:
        """Every dead letter after the group's committed offsets, up to the end."""
        admin = admin_client()
        meta = admin.list_topics(self.dlq_topic, timeout=self.timeout).topics.get(
            self.dlq_topic
        )
        if meta is None or meta.error is not None or not meta.partitions:
            return ReplayReport(), []
        partitions = sorted(meta.partitions)
        consumer.assign(
            [TopicPartition(self.dlq_topic, p, OFFSET_STORED) for p in partitions]
        )
        report, positions, at_end = ReplayReport(), {}, set()
        deadline = time.monotonic() + self.timeout
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise ReplayFailed(
                    f"could not read {self.dlq_topic} to its end within {self.timeout:.0f}s"
                )
            for msg in consumer.consume(500, timeout=0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        continue
                    raise ReplayFailed(str(err))
                at_end.discard(msg.partition())
                positions[msg.partition()] = msg.offset() + 1
                report.records.append(_dead_letter_record(msg))
        commit = [TopicPartition(self.dlq_topic, p, o) for p, o in positions.items()]
        return report, commit

    def _produce(self, report: ReplayReport) -> None:
        producer = Producer(producer_config())
        routable = [r for r in report.records if r.topic]
        report.skipped = len(report.records) - len(routable)
        done, errors = [0], []

        def on_delivery(err, msg):
            if err is not None:
                errors.append(err)
            else:
                done[0] += 1
                self.progress(done[0], len(routable))

        self.progress(0, len(routable))
        for r in routable:
            headers = deadletter.original_headers(r.headers) + [
                (
                    deadletter.REPLAYED_FROM,
                    f"{self.dlq_topic}[{r.partition}]@{r.offset}",
                )
            ]
            produce(
                producer,
                r.topic,
                poll_seconds=0.1,
                key=r.key,
                value=r.value,
                headers=headers,
                on_delivery=on_delivery,
            )
            producer.poll(0)
        remaining = producer.flush(settings.KAFKA["MESSAGE_TIMEOUT_MS"] / 1000 + 5)
        if remaining or errors:
            raise ReplayFailed(
                f"{remaining + len(errors)} of {len(routable)} records were not "
                f"acknowledged ({errors[0] if errors else 'timeout'}); nothing was "
                "committed, run it again"
            )
        report.replayed = len(routable)


def _dead_letter_record(msg) -> DeadLetterRecord:
    headers = list(msg.headers() or [])
    found = {
        k: (v.decode(errors="replace") if isinstance(v, bytes) else v or "")
        for k, v in headers
    }
    return DeadLetterRecord(
        topic=found.get(deadletter.ORIGINAL_TOPIC, ""),
        partition=msg.partition(),
        offset=msg.offset(),
        key=msg.key(),
        value=msg.value(),
        headers=headers,
        error=deadletter.describe_error(found),
    )
