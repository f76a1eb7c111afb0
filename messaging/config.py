"""Kafka clients: configuration built in one place from settings, per client kind.

Every client the project creates comes from here, so it gets the connection and
security settings (``settings.KAFKA``).
"""

import logging
import uuid

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient
from django.conf import settings


class OpsError(Exception):
    """An operation that cannot be done, with a message for the operator."""


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


def admin_client(**overrides) -> AdminClient:
    """An AdminClient with the project's settings: the only place one is built."""
    return AdminClient(admin_config(**overrides))


def reader(**overrides) -> Consumer:
    """A consumer that only assigns partitions: it never joins a group or commits."""
    return Consumer(
        consumer_config(
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


def cluster_metadata(admin: AdminClient, timeout: float):
    """Metadata of every topic; OpsError naming the brokers when they do not answer."""
    # Always ask for every topic: a metadata request naming a missing topic makes
    # brokers with auto-creation on create it.
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise OpsError(
            f"cannot reach the broker at {settings.KAFKA['BROKERS']}: "
            f"{exc.args[0].str()}"
        ) from None


def topic_metadata(admin: AdminClient, topic: str, timeout: float):
    meta = cluster_metadata(admin, timeout).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise OpsError(f"topic {topic!r} does not exist")
    return meta
