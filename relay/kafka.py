"""Kafka client configuration, built in one place from settings for every client kind."""

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings

logger = logging.getLogger(__name__)


def common_config() -> dict:
    """Connection and security settings shared by every client the project creates."""
    kafka = settings.KAFKA
    config = {
        "bootstrap.servers": kafka["BROKERS"],
        "client.id": kafka["CLIENT_ID"],
        "security.protocol": kafka["SECURITY_PROTOCOL"],
        # Tolerate a broker that is down: clients reconnect on their own.
        "reconnect.backoff.max.ms": 5000,
        "logger": logging.getLogger("librdkafka"),
    }
    if kafka["SECURITY_PROTOCOL"].startswith("SASL"):
        config["sasl.mechanism"] = kafka["SASL_MECHANISM"]
        config["sasl.username"] = kafka["SASL_USERNAME"]
        config["sasl.password"] = kafka["SASL_PASSWORD"]
    if kafka["SSL_CA_LOCATION"]:
        config["ssl.ca.location"] = kafka["SSL_CA_LOCATION"]
    return config


def producer_config(**overrides) -> dict:
    kafka = settings.KAFKA
    config = common_config() | {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": kafka["LINGER_MS"],
        "batch.size": kafka["BATCH_SIZE"],
        "compression.type": kafka["COMPRESSION"],
        "message.timeout.ms": kafka["MESSAGE_TIMEOUT_MS"],
    }
    return config | overrides


def consumer_config(group_id: str, **overrides) -> dict:
    kafka = settings.KAFKA
    config = common_config() | {
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": kafka["SESSION_TIMEOUT_MS"],
        # At most a third of the session, so a short session (tests) still gets
        # several heartbeats, and rebalances are noticed within a few seconds.
        "heartbeat.interval.ms": min(3000, kafka["SESSION_TIMEOUT_MS"] // 3),
        "fetch.wait.max.ms": kafka["FETCH_WAIT_MAX_MS"],
        "partition.assignment.strategy": "cooperative-sticky",
        "isolation.level": "read_committed",
    }
    return config | overrides


def admin_config(**overrides) -> dict:
    return common_config() | overrides


def ensure_topics(admin: AdminClient, topics: list[str], timeout: float = 10) -> None:
    """Create the topics that do not exist yet, with the configured partition count."""
    existing = admin.list_topics(timeout=timeout).topics
    missing = [t for t in topics if t not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [
            NewTopic(
                topic,
                num_partitions=settings.OUTBOX["PARTITIONS"],
                replication_factor=settings.OUTBOX["REPLICATION_FACTOR"],
            )
            for topic in missing
        ],
        operation_timeout=timeout,
    )
    for topic, future in futures.items():
        try:
            future.result()
            logger.info("created topic %s (%d partitions)", topic, settings.OUTBOX["PARTITIONS"])
        except KafkaException as exc:
            if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: another process won
                raise
