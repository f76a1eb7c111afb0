"""Apache Kafka, a Kafka Connect worker and the Debezium connector, for CDC tests.

The tests that use these need PostgreSQL with wal_level=logical (marked
postgres_only): the connector reads the test database's WAL, so their data must
be committed (``django_db(transaction=True)``).
"""

import threading
import time
import uuid
from datetime import time as dt_time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings as django_settings
from django.db import connection

from devtools.connect import ConnectWorker
from devtools.kafka import KafkaBroker
from relay import cdc
from relay.models import OutboxEvent
from tests.conftest import wait_until

# Fixtures: a test module takes them with ``from tests.cdc_support import *``.
__all__ = [
    "kafka",
    "connect_dir",
    "connect_worker",
    "cdc_topic",
    "cdc_slot",
    "connector",
    "cdc_env",
    "start_cdc_process",
]


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """One Apache Kafka node for the session (CDC needs the JVM client's broker)."""
    broker = KafkaBroker(data_dir=tmp_path_factory.mktemp("kafka"), sasl=False)
    broker.start()
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

    def start(self, worker: ConnectWorker | None = None) -> "Connector":
        self.worker = worker or self.worker
        cdc.connector_register(self.worker.url)  # as `outbox_cdc register` does
        self.worker.wait_running(self.name)
        return self

    def stop(self) -> None:
        """Delete the connector: its task stops and commits its position."""
        self.worker.delete_connector(self.name)
        assert wait_until(lambda: not cdc.slot_status()["active"], timeout=30)


@pytest.fixture
def connector(connect_worker, cdc_slot, cdc_topic):
    """The test's connector on the session's worker, not started (no slot yet)."""
    conn = Connector(connect_worker)
    yield conn
    try:
        connect_worker.delete_connector(conn.name)
    except Exception:  # already deleted by the test, or the worker was restarted
        pass


# -- processes and load ----------------------------------------------------------


@pytest.fixture
def cdc_env(kafka, cdc_topic, cdc_slot):
    """Environment for manage.py subprocesses: test database, Kafka, topic, slot."""
    from tests.conftest import subprocess_env

    return subprocess_env(
        kafka.address,
        cdc_topic,
        CDC_SLOT_NAME=cdc_slot["SLOT_NAME"],
        CDC_PUBLICATION=cdc_slot["PUBLICATION"],
    )


@pytest.fixture
def start_cdc_process(cdc_env, tmp_path):
    """Start ``manage.py <args>`` against Apache Kafka; killed after the test."""
    from tests.conftest import managed_processes

    with managed_processes(cdc_env, tmp_path) as start:
        yield start


class Load(threading.Thread):
    """Book, reschedule and cancel appointments through the services, steadily.

    Each patient cycles book -> reschedule -> cancel on slots of their own; the
    patients take turns, so the events of different appointments interleave.
    """

    def __init__(self, doctor, patients, *, pause: float = 0.02, day=None):
        super().__init__(daemon=True)
        from tests.test_flow import next_weekday

        self.doctor, self.patients, self.pause = doctor, patients, pause
        self.day = day or next_weekday()
        self.running = True
        self.events = 0
        self.errors: list[Exception] = []

    def step(self, index: int, patient, state: dict) -> None:
        from appointments import services

        appointment = state.get(index)
        if appointment is None:
            state[index] = services.appointment_book(
                patient=patient,
                doctor=self.doctor,
                date=self.day,
                time_slot=SLOTS[index],
            )
        elif appointment.status == "booked" and appointment.time_slot == SLOTS[index]:
            state[index] = services.appointment_reschedule(
                appointment=appointment,
                by=patient,
                date=self.day,
                time_slot=SLOTS[index + len(self.patients)],
            )
        else:
            services.appointment_cancel(appointment=appointment, by=patient)
            state[index] = None
        self.events += 1

    def run(self) -> None:
        from django.db import connection as thread_connection

        state: dict = {}
        try:
            while self.running:
                for index, patient in enumerate(self.patients):
                    self.step(index, patient, state)
                    time.sleep(self.pause)
        except Exception as exc:  # reported by stop()
            self.errors.append(exc)
        finally:
            thread_connection.close()

    def stop(self) -> int:
        self.running = False
        self.join(30)
        assert not self.errors, self.errors
        return self.events


SLOTS = [dt_time(9 + m // 60, m % 60) for m in range(0, 8 * 60, 30)]


def assert_each_event_once_and_in_order(patients) -> int:
    """Every outbox event is one inbox row; each patient's notifications per
    appointment are booked, rescheduled, cancelled in that order. Returns events."""
    from notifications.models import Notification, ProcessedEvent

    events = list(
        OutboxEvent.objects.order_by("seq").values_list("event_id", flat=True)
    )
    processed = set(ProcessedEvent.objects.values_list("event_id", flat=True))
    missing = [e for e in events if e not in processed]
    assert not missing, f"{len(missing)} of {len(events)} events never processed"
    for patient in patients:
        notes = Notification.objects.filter(recipient=patient).order_by("id")
        per_appointment: dict = {}
        for appointment_id, event_id in notes.values_list("appointment_id", "event_id"):
            per_appointment.setdefault(appointment_id, []).append(event_id)
        for appointment_id, got in per_appointment.items():
            expected = list(
                OutboxEvent.objects.filter(aggregateid=str(appointment_id))
                .order_by("seq")
                .values_list("event_id", flat=True)
            )
            assert got == expected, f"appointment {appointment_id}: order or duplicates"
    return len(events)


def all_processed() -> bool:
    from notifications.models import ProcessedEvent

    return OutboxEvent.objects.count() == ProcessedEvent.objects.count()


def published_processed() -> bool:
    """The consumer has processed every row marked published (it has caught up)."""
    from notifications.models import ProcessedEvent

    published = OutboxEvent.objects.published().values("event_id")
    return not published.exclude(
        event_id__in=ProcessedEvent.objects.values("event_id")
    ).exists()
