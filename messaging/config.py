"""Kafka clients: configuration built in one place from settings, per client kind.

Every client the project creates comes from here, so it gets the connection and
security settings (``settings.KAFKA``).
"""

import logging
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from django.conf import settings

from core.loops import RateLimited

logger = logging.getLogger("messaging")


class OpsError(Exception):
    """An operation that cannot be done, with a message for the operator."""


class AuthenticationFailures:
    """What every client's ``error_cb`` reports: the broker refused our credentials.

    librdkafka retries a refused login on its own and, for the caller, a request
    then just times out ("transport failure"). This keeps the real reason, logs it
    (once per ``log_every`` seconds, so a retrying loop does not flood the log),
    and lets a one-shot command or a probe name it.
    """

    codes = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}
    remember = 60.0  # seconds a refusal explains a failed request
    log_every = 30.0

    def __init__(self):
        self._lock = threading.Lock()
        self._last: tuple[float, str] | None = None
        self._log = RateLimited(self.log_every)

    def __call__(self, error: KafkaError) -> None:
        if error.code() not in self.codes:
            return
        kafka = settings.KAFKA
        text = (
            f"authentication failed for Kafka user {kafka['SASL_USERNAME']!r} "
            f"({kafka['SASL_MECHANISM']}): {error.str()}"
        )
        with self._lock:
            self._last = (time.monotonic(), text)
            if self._log.ready():
                logger.error("kafka: %s", text)

    def recent(self) -> str | None:
        """The last refusal, if it happened within ``remember`` seconds."""
        with self._lock:
            if self._last and time.monotonic() - self._last[0] <= self.remember:
                return self._last[1]
        return None


authentication_failures = AuthenticationFailures()


class _NoRepeatedLoginFailures(logging.Filter):
    """librdkafka logs every refused login of every connection: error_cb says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SASL authentication error" not in record.getMessage()


logging.getLogger("librdkafka").addFilter(_NoRepeatedLoginFailures())


def failure_reason(error: KafkaError) -> str:
    """Why a request failed: a recent authentication refusal, else the error."""
    return authentication_failures.recent() or error.str()


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
        "error_cb": authentication_failures,
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
        admin.poll(0)  # serves error_cb: a refused login is the real reason
        raise OpsError(
            f"cannot reach the broker at {settings.KAFKA['BROKERS']}: "
            f"{failure_reason(exc.args[0])}"
        ) from None


def topic_metadata(admin: AdminClient, topic: str, timeout: float):
    meta = cluster_metadata(admin, timeout).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise OpsError(f"topic {topic!r} does not exist")
    return meta
