"""Move a consumer group's committed offsets: to the earliest, the latest or a time.

This is the Kafka protocol's own way (ListOffsets, then OffsetCommit through the
admin API), so on Apache Kafka it is exact. Kafka refuses to change the offsets of
a group that has members (UNKNOWN_MEMBER_ID); so do we, before asking, unless
forced. Forced, we join the group ourselves: the coordinator then drops members
that are gone but not timed out yet (a SIGKILLed consumer); if we end up owning
every partition, we commit as a member and leave. A member that is really alive
keeps its partitions and the reset fails, naming them.

The broker used in tests (Tansu) answers ListOffsets with a count of record
batches (DESIGN.md section 9): "earliest" is right there, "latest" and times only
when every batch holds one record.
"""

import time
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec
from django.conf import settings
from django.utils import timezone

from messaging.config import admin_client, consumer_config

# Errors with which a broker turns down an offset change while members are in the group.
_GROUP_BUSY = {KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS}
_NO_MEMBERS = {ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD}


class GroupHasMembers(Exception):
    """The group is consuming: its members would overwrite whatever we commit."""


class OffsetResetFailed(Exception):
    """The broker did not accept the new offsets."""


@dataclass(frozen=True)
class ResetTarget:
    kind: str  # "earliest", "latest" or "time"
    timestamp_ms: int | None = None

    def __str__(self) -> str:
        if self.kind != "time":
            return self.kind
        return datetime.fromtimestamp(
            self.timestamp_ms / 1000, tz=timezone.get_current_timezone()
        ).isoformat()

    def spec(self) -> OffsetSpec:
        if self.kind == "earliest":
            return OffsetSpec.earliest()
        if self.kind == "latest":
            return OffsetSpec.latest()
        return OffsetSpec.for_timestamp(self.timestamp_ms)


@dataclass
class PartitionReset:
    topic: str
    partition: int
    before: int | None  # the committed offset, None when the group had none
    after: int


def parse_reset_target(text: str) -> ResetTarget:
    """'earliest', 'latest' or an ISO 8601 datetime (without offset: TIME_ZONE)."""
    value = text.strip()
    if value.lower() in ("earliest", "latest"):
        return ResetTarget(value.lower())
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not 'earliest', 'latest' or an ISO 8601 datetime "
            "(e.g. 2026-05-04T09:30:00Z)"
        ) from None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return ResetTarget("time", round(moment.timestamp() * 1000))


def group_live_members(
    admin: AdminClient, group: str, timeout: float = 10
) -> int | None:
    """0 when the group has no live member, else how many (None: some, count unknown)."""
    future = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
    try:
        description = future.result()
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
            return 0
        raise
    if description.members:
        return len(description.members)
    # Some brokers (Tansu) list no members for a group that is consuming: trust the state.
    if description.state in _NO_MEMBERS:
        return 0
    return None


def group_offsets_reset(
    *,
    group: str,
    topics: list[str],
    target: ResetTarget,
    force: bool = False,
    admin: AdminClient | None = None,
    timeout: float = 10,
) -> list[PartitionReset]:
    """Commit the target offsets for every partition of ``topics`` in ``group``.

    Refused (GroupHasMembers) while the group has members, unless ``force``.
    """
    admin = admin or admin_client()
    live = group_live_members(admin, group, timeout)
    if live != 0 and not force:
        raise GroupHasMembers(
            f"group {group} has {live or 'some'} live member(s); stop its consumers first "
            "(--force takes over members that are gone but not timed out yet)"
        )
    partitions = _partitions(admin, topics, timeout)
    before = _committed(admin, group, partitions, timeout)
    after = _target_offsets(admin, partitions, target, timeout)
    if live == 0:
        _alter(admin, group, after, timeout)
    else:
        _commit_as_member(group, topics, after)
    return [
        PartitionReset(
            tp.topic, tp.partition, before.get((tp.topic, tp.partition)), tp.offset
        )
        for tp in after
    ]


def _partitions(
    admin: AdminClient, topics: list[str], timeout: float
) -> list[TopicPartition]:
    metadata = admin.list_topics(timeout=timeout).topics
    partitions = []
    for topic in topics:
        meta = metadata.get(topic)
        if meta is None or meta.error is not None:
            raise OffsetResetFailed(f"topic {topic} does not exist")
        partitions += [TopicPartition(topic, p) for p in sorted(meta.partitions)]
    return partitions


def _committed(admin, group, partitions, timeout) -> dict[tuple[str, int], int]:
    request = ConsumerGroupTopicPartitions(group, partitions)
    result = admin.list_consumer_group_offsets([request], request_timeout=timeout)[
        group
    ]
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in result.result().topic_partitions
        if tp.error is None and tp.offset >= 0
    }


def _target_offsets(
    admin, partitions, target: ResetTarget, timeout
) -> list[TopicPartition]:
    answers = _list_offsets(admin, {tp: target.spec() for tp in partitions}, timeout)
    if target.kind == "time":
        # No record at or after that time: start after the last one, as Kafka's tools do.
        beyond = [tp for tp in partitions if answers[(tp.topic, tp.partition)] < 0]
        if beyond:
            answers |= _list_offsets(
                admin, {tp: OffsetSpec.latest() for tp in beyond}, timeout
            )
    return [
        TopicPartition(tp.topic, tp.partition, answers[(tp.topic, tp.partition)])
        for tp in partitions
    ]


def _list_offsets(admin, specs, timeout) -> dict[tuple[str, int], int]:
    futures = admin.list_offsets(
        specs, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout
    )
    return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}


def _alter(admin, group, offsets: list[TopicPartition], timeout) -> None:
    request = ConsumerGroupTopicPartitions(group, offsets)
    try:
        result = admin.alter_consumer_group_offsets([request], request_timeout=timeout)
        errors = [
            tp.error for tp in result[group].result().topic_partitions if tp.error
        ]
    except KafkaException as exc:
        errors = [exc.args[0]]
    if errors:
        hint = " (a member joined meanwhile)" if errors[0].code() in _GROUP_BUSY else ""
        raise OffsetResetFailed(
            f"the broker refused the new offsets{hint}: {errors[0]}"
        )


def _commit_as_member(
    group: str, topics: list[str], offsets: list[TopicPartition]
) -> None:
    """Join the group, wait to own every partition, commit the offsets, leave."""
    wanted = {(tp.topic, tp.partition) for tp in offsets}
    owned: set[tuple[str, int]] = set()
    consumer = Consumer(consumer_config(group))
    consumer.subscribe(
        topics,
        on_assign=lambda c, ps: owned.update((p.topic, p.partition) for p in ps),
        on_revoke=lambda c, ps: owned.difference_update(
            (p.topic, p.partition) for p in ps
        ),
    )
    # Gone members are dropped within a session timeout; the join takes a while too.
    deadline = time.monotonic() + 2 * settings.KAFKA["SESSION_TIMEOUT_MS"] / 1000 + 15
    try:
        while owned != wanted:
            if time.monotonic() > deadline:
                held = ", ".join(f"{t}[{p}]" for t, p in sorted(wanted - owned))
                raise OffsetResetFailed(
                    f"live members still hold {held}; stop them first"
                )
            consumer.poll(0.2)  # records it returns are not processed nor committed
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def reset_lines(
    group: str, target: ResetTarget, resets: list[PartitionReset]
) -> list[str]:
    """What ``kafka groups reset-offsets`` and ``run_consumer --reset-offsets`` print."""
    lines = [
        f"group {group}: offsets reset to {target}",
        f"  {'topic':<30} {'partition':>9} {'before':>10} {'after':>10}",
    ]
    for r in resets:
        before = "-" if r.before is None else str(r.before)
        lines.append(f"  {r.topic:<30} {r.partition:>9} {before:>10} {r.after:>10}")
    return lines
