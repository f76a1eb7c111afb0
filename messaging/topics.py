"""Topics: the one topic creator, and listing and describing them."""

import logging

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings

from messaging.config import OpsError, admin_client, cluster_metadata, topic_metadata
from messaging.offsets import watermarks

logger = logging.getLogger(__name__)


def create_topics(
    *,
    topics: list[str],
    partitions: int | None = None,
    replication_factor: int | None = None,
    config: dict[str, str] | None = None,
    admin: AdminClient | None = None,
    timeout: float = 10,
) -> list[tuple[str, str | KafkaError]]:
    """The one topic creator: (topic, "created", "exists" or the error) for each.

    Partitions and replication default to KAFKA_TOPIC_PARTITIONS and
    KAFKA_REPLICATION_FACTOR.
    """
    admin = admin or admin_client()
    partitions = partitions or settings.KAFKA["TOPIC_PARTITIONS"]
    replication_factor = (
        replication_factor or settings.KAFKA["TOPIC_REPLICATION_FACTOR"]
    )
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
        except KafkaException as exc:
            error = exc.args[0]
            exists = error.code() == KafkaError.TOPIC_ALREADY_EXISTS  # or a race lost
            results.append((topic, "exists" if exists else error))
            continue
        logger.info("created topic %s (%d partitions)", topic, partitions)
        results.append((topic, "created"))
    return results


def ensure_topics(
    topics: list[str],
    *,
    partitions: int | None = None,
    replication_factor: int | None = None,
    admin: AdminClient | None = None,
    timeout: float = 10,
) -> None:
    """Create those of ``topics`` that do not exist yet; KafkaException if it fails."""
    admin = admin or admin_client()
    existing = admin.list_topics(timeout=timeout).topics
    missing = [t for t in topics if t not in existing]
    if not missing:
        return
    results = create_topics(
        topics=missing,
        partitions=partitions,
        replication_factor=replication_factor,
        admin=admin,
        timeout=timeout,
    )
    for _, result in results:
        if isinstance(result, KafkaError):
            raise KafkaException(result)


def topics_create(*, topics: list[str], timeout: float = 10, **options) -> list:
    """``kafka topics create``: create_topics, failing with OpsError for the operator."""
    admin = admin_client()
    cluster_metadata(admin, timeout)  # a clear error when the broker is down
    results = create_topics(topics=topics, admin=admin, timeout=timeout, **options)
    for topic, result in results:
        if isinstance(result, KafkaError):
            raise OpsError(f"cannot create {topic}: {result.str()}")
    return results


def topics_list(*, timeout: float = 10) -> list[tuple[str, int, int]]:
    """(topic, partitions, replication factor) for every topic, sorted by name."""
    meta = cluster_metadata(admin_client(), timeout)
    rows = []
    for name, topic in sorted(meta.topics.items()):
        if topic.error is not None:
            continue
        replicas = max((len(p.replicas) for p in topic.partitions.values()), default=0)
        rows.append((name, len(topic.partitions), replicas))
    return rows


def topic_describe(*, topic: str, timeout: float = 10) -> list[tuple]:
    """(partition, leader, replicas, in-sync replicas, start offset, end offset) rows."""
    meta = topic_metadata(admin_client(), topic, timeout)
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
