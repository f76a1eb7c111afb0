"""Consumer groups: list them, describe one (members, offsets, lag)."""

from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from messaging.config import OpsError, admin_client, cluster_metadata
from messaging.offsets import PartitionOffsets, watermarks


def groups_list(*, timeout: float = 10) -> list[tuple[str, str]]:
    """(group, state) for every consumer group the broker knows, sorted."""
    admin = admin_client()
    cluster_metadata(admin, timeout)
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
    cluster_metadata(admin, timeout)
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
    keys = _group_partitions(admin, set(offsets) | set(owners), timeout)
    partitions = _partition_offsets(keys, offsets, owners, timeout)
    return GroupDescription(group, _state(description.state), members, partitions)


def _group_partitions(admin: AdminClient, keys: set, timeout: float) -> set:
    """Every partition of the group's topics, also those it neither committed nor
    was assigned: the group will read them from the start."""
    all_topics = cluster_metadata(admin, timeout).topics
    for topic in {t for t, _ in keys}:
        meta = all_topics.get(topic)
        if meta is not None and meta.error is None:
            keys |= {(topic, p) for p in meta.partitions}
    return keys


def _partition_offsets(keys, offsets, owners, timeout) -> list[PartitionOffsets]:
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
    return partitions


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
