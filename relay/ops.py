"""Kafka operations behind ``manage.py kafka``: topics, tail, consumer groups and lag.

Every client comes from ``relay.kafka`` so it gets the project's connection and
security settings. End offsets are read from fetch responses (the high watermark
each one carries), never from ListOffsets: that is right on Apache Kafka and also on
the Tansu broker used in development, whose ListOffsets answer is wrong.
"""

import signal
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings

from relay import kafka


class OpsError(Exception):
    """An operation that cannot be done, with a message for the operator."""


# -- tables -----------------------------------------------------------------


def render_table(headers: list[str], rows: Iterable[Iterable]) -> str:
    """Align columns as the Kafka CLI tools do: a header line, then one per row."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _cell(value) -> str:
    return "-" if value is None else str(value)


# -- lag arithmetic ---------------------------------------------------------


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


# -- clients ------------------------------------------------------------------


def admin_client() -> AdminClient:
    return AdminClient(kafka.admin_config())


def reader(**overrides) -> Consumer:
    """A consumer that only assigns partitions: it never joins a group or commits."""
    return Consumer(
        kafka.consumer_config(
            f"healthcare-ops-{uuid.uuid4().hex[:12]}",
            **{
                "enable.partition.eof": True,
                "isolation.level": "read_uncommitted",
                "fetch.wait.max.ms": min(settings.KAFKA["FETCH_WAIT_MAX_MS"], 100),
                "queued.max.messages.kbytes": 1024,
                **overrides,
            },
        )
    )


def _metadata(admin: AdminClient, timeout: float):
    # Always ask for every topic: a metadata request naming a missing topic makes
    # brokers with auto-creation on create it.
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise OpsError(
            f"cannot reach the broker at {settings.KAFKA['BROKERS']}: {exc.args[0].str()}"
        ) from None


def _topic_metadata(admin: AdminClient, topic: str, timeout: float):
    meta = _metadata(admin, timeout).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise OpsError(f"topic {topic!r} does not exist")
    return meta


# -- watermarks ----------------------------------------------------------------


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
    pending = {(tp.topic, tp.partition) for tp in partitions}
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


# -- topics ---------------------------------------------------------------------


def project_topics() -> list[str]:
    """The topics this project produces to and consumes from, dead letters included."""
    topics = [
        settings.OUTBOX["TOPIC_PREFIX"] + t for t in settings.OUTBOX["TOPICS"].values()
    ]
    topics += [t for t in settings.CONSUMER["TOPICS"] if t not in topics]
    if settings.CONSUMER["DLQ_TOPIC"] not in topics:
        topics.append(settings.CONSUMER["DLQ_TOPIC"])
    return topics


def topics_create(
    *,
    topics: list[str],
    partitions: int,
    replication_factor: int,
    config: dict[str, str] | None = None,
    timeout: float = 10,
) -> list[tuple[str, str]]:
    """Create the topics; return (topic, "created" or "exists") for each."""
    admin = admin_client()
    _metadata(admin, timeout)
    futures = admin.create_topics(
        [
            NewTopic(
                t,
                num_partitions=partitions,
                replication_factor=replication_factor,
                config=config or {},
            )
            for t in topics
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    results = []
    for topic, future in futures.items():
        try:
            future.result()
            results.append((topic, "created"))
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise OpsError(f"cannot create {topic}: {exc.args[0].str()}") from None
            results.append((topic, "exists"))
    return results


def topics_list(*, timeout: float = 10) -> list[tuple[str, int, int]]:
    """(topic, partitions, replication factor) for every topic, sorted by name."""
    meta = _metadata(admin_client(), timeout)
    rows = []
    for name, topic in sorted(meta.topics.items()):
        if topic.error is not None:
            continue
        replicas = max((len(p.replicas) for p in topic.partitions.values()), default=0)
        rows.append((name, len(topic.partitions), replicas))
    return rows


def topic_describe(*, topic: str, timeout: float = 10) -> list[tuple]:
    """(partition, leader, replicas, in-sync replicas, start offset, end offset) rows."""
    meta = _topic_metadata(admin_client(), topic, timeout)
    parts = sorted(meta.partitions.values(), key=lambda p: p.id)
    marks = watermarks(
        [TopicPartition(topic, p.id, OFFSET_BEGINNING) for p in parts], timeout=timeout
    )
    rows = []
    for p in parts:
        low, high = marks.get((topic, p.id), (None, None))
        rows.append(
            (
                p.id,
                p.leader,
                ",".join(map(str, p.replicas)),
                ",".join(map(str, p.isrs)),
                low,
                high,
            )
        )
    return rows


# -- consumer groups ---------------------------------------------------------------


def groups_list(*, timeout: float = 10) -> list[tuple[str, str]]:
    """(group, state) for every consumer group the broker knows, sorted."""
    admin = admin_client()
    _metadata(admin, timeout)
    try:
        result = admin.list_consumer_groups(request_timeout=timeout).result()
    except KafkaException as exc:
        raise OpsError(f"cannot list groups: {exc.args[0].str()}") from None
    return sorted((g.group_id, _state(g.state)) for g in result.valid)


@dataclass
class GroupDescription:
    group: str
    state: str
    members: list[tuple[str, str, str, str]]  # member id, client id, host, assignment
    partitions: list[PartitionOffsets]


def group_describe(*, group: str, timeout: float = 10) -> GroupDescription:
    """Members, assignment, committed and end offsets and lag of one consumer group."""
    admin = admin_client()
    _metadata(admin, timeout)
    try:
        description = admin.describe_consumer_groups([group], request_timeout=timeout)[
            group
        ].result()
        committed = (
            admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=timeout
            )[group]
            .result()
            .topic_partitions
        )
    except KafkaException as exc:
        raise OpsError(f"cannot describe group {group}: {exc.args[0].str()}") from None

    owners: dict[tuple[str, int], object] = {}
    members = []
    for m in description.members:
        assigned = m.assignment.topic_partitions if m.assignment else []
        for tp in assigned:
            owners[(tp.topic, tp.partition)] = m
        members.append(
            (m.member_id, m.client_id, m.host, _describe_partitions(assigned))
        )

    offsets = {
        (tp.topic, tp.partition): (tp.offset if tp.offset != OFFSET_INVALID else None)
        for tp in committed
        if tp.error is None
    }
    keys = set(offsets) | set(owners)
    # Partitions of the group's topics that it has neither committed nor been assigned
    # still count: the group will read them from the start.
    all_topics = _metadata(admin, timeout).topics
    for topic in {t for t, _ in keys}:
        meta = all_topics.get(topic)
        if meta is not None and meta.error is None:
            keys |= {(topic, p) for p in meta.partitions}
    marks = watermarks(
        [
            TopicPartition(t, p, offsets.get((t, p)) or OFFSET_BEGINNING)
            for t, p in keys
        ],
        timeout=timeout,
    )
    partitions = []
    for topic, partition in sorted(keys):
        low, high = marks.get((topic, partition), (0, None))
        owner = owners.get((topic, partition))
        partitions.append(
            PartitionOffsets(
                topic=topic,
                partition=partition,
                committed=offsets.get((topic, partition)),
                end=high,
                start=low,
                member=owner.member_id if owner else None,
                host=owner.host if owner else None,
                client_id=owner.client_id if owner else None,
            )
        )
    return GroupDescription(group, _state(description.state), members, partitions)


def _state(state) -> str:
    name = getattr(state, "name", str(state))
    return name.replace("_", " ").title().replace(" ", "")


def _describe_partitions(partitions) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return (
        " ".join(
            f"{t}({','.join(map(str, sorted(ps)))})"
            for t, ps in sorted(by_topic.items())
        )
        or "-"
    )


# -- tail ------------------------------------------------------------------------


@dataclass
class Record:
    key: str | None
    partition: int
    offset: int
    headers: dict[str, str]
    value: str


class TopicTail:
    """Read a topic, from its end or beginning, until stopped or enough records came."""

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

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.running = False

    def open(self) -> Consumer:
        """Assign the partitions at their start offsets; records arrive from here on."""
        self.consumer = reader(**{"enable.partition.eof": False})
        self.consumer.assign(self.start_offsets())
        return self.consumer

    def start_offsets(self) -> list[TopicPartition]:
        meta = _topic_metadata(admin_client(), self.topic, self.timeout)
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
            while self.running:
                if self.max_messages is not None and seen >= self.max_messages:
                    return
                if (
                    self.idle_timeout is not None
                    and time.monotonic() - last_seen > self.idle_timeout
                ):
                    return
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


# -- dead letters ---------------------------------------------------------------------


@dataclass
class DeadLetters:
    total: int
    latest: list[Record]


def dead_letters(*, topic: str, limit: int = 20, timeout: float = 5) -> DeadLetters:
    """How many records the dead-letter topic holds, and the latest ``limit`` of them."""
    meta = _metadata(admin_client(), timeout).topics.get(topic)
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
    consumer = reader(**{"enable.partition.eof": False})
    records = []
    try:
        consumer.assign(
            [
                TopicPartition(topic, p, max(marks[(topic, p)][0], high - limit))
                for (_, p), high in wanted.items()
            ]
        )
        deadline = time.monotonic() + timeout
        while wanted and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.1):
                if msg.error() is not None:
                    continue
                records.append(to_record(msg))
                if msg.offset() + 1 >= wanted.get((topic, msg.partition()), 0):
                    wanted.pop((topic, msg.partition()), None)
    finally:
        consumer.close()
    records.sort(key=lambda r: r.headers.get("dlq_time", ""), reverse=True)
    return DeadLetters(total, records[:limit])
