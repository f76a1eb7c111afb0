"""Apache Kafka, a Kafka Connect worker and the Debezium connector, for CDC tests.

The tests that use these need PostgreSQL with wal_level=logical (marked
postgres_only): the connector reads the test database's WAL, so their data must
be committed (``django_db(transaction=True)``).
"""

import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings as django_settings
from django.db import connection

from devtools.connect import ConnectWorker
from devtools.interim import KafkaBroker
from relay import cdc
from tests.conftest import wait_until

# Fixtures: a test module takes them with ``from tests.cdc_support import *``.
__all__ = [
    "kafka",
    "connect_dir",
    "connect_worker",
    "cdc_topic",
    "cdc_slot",
    "connector",
]


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """One Apache Kafka node for the session (CDC needs the JVM client's broker)."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def connect_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("connect")


@pytest.fixture(scope="session")
def connect_worker(kafka, connect_dir):
    """One Connect worker for the session; each test registers its own connector."""
    worker = ConnectWorker(connect_dir, kafka.address).start()
    yield worker
    worker.stop()


def create_topic(brokers: str, name: str, partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": brokers})
    futures = admin.create_topics([NewTopic(name, partitions, 1)])
    for future in futures.values():
        future.result(30)


@pytest.fixture
def cdc_topic(settings, kafka):
    """A fresh 3-partition topic on Apache Kafka, routed to and consumed from."""
    name = f"appointments-{uuid.uuid4().hex[:10]}"
    create_topic(kafka.address, name)
    create_topic(kafka.address, f"{name}.dlq")
    settings.KAFKA = {**settings.KAFKA, "BROKERS": kafka.address}
    settings.OUTBOX = {**settings.OUTBOX, "TOPICS": {"appointment": name}}
    settings.CONSUMER = {
        **settings.CONSUMER,
        "TOPICS": [name],
        "DLQ_TOPIC": f"{name}.dlq",
        "GROUP": f"group-{name}",
    }
    return name


@pytest.fixture
def cdc_slot(settings, db):
    """This test's slot, publication and connector name; dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    settings.CDC = {
        **settings.CDC,
        "SLOT_NAME": f"hc_test_{tag}",
        "PUBLICATION": f"hc_test_{tag}",
        "CONNECTOR_NAME": f"outbox-{tag}",
        "TOPIC_PREFIX": f"hc-{tag}",
        "HEARTBEAT_MS": 1000,
    }
    yield settings.CDC
    status = cdc.slot_status()
    if status is not None and status["active"]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [status["active_pid"]])
    try:
        cdc.cdc_teardown()
    except cdc.CDCError:
        pass


class Connector:
    """The test's connector on the session's worker, registered as in production."""

    def __init__(self, worker: ConnectWorker):
        self.worker = worker
        self.name = django_settings.CDC["CONNECTOR_NAME"]

    def start(self) -> "Connector":
        self.worker.put_connector(self.name, cdc.connector_config())
        self.worker.wait_running(self.name)
        return self

    def stop(self) -> None:
        """Delete the connector: its task stops and commits its position."""
        self.worker.delete_connector(self.name)
        assert wait_until(lambda: not cdc.slot_status()["active"], timeout=30)


@pytest.fixture
def connector(connect_worker, cdc_slot, cdc_topic):
    """Publication and slot created, the connector not yet started."""
    cdc.cdc_setup()
    conn = Connector(connect_worker)
    yield conn
    try:
        connect_worker.delete_connector(conn.name)
    except Exception:  # already deleted by the test, or the worker was restarted
        pass
