import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from rest_framework.test import APIClient

from tests.broker import Broker

ROOT = Path(__file__).resolve().parent.parent


BROKER_KIND = os.environ.get("TEST_BROKER", "tansu")
if BROKER_KIND not in ("kafka", "tansu"):
    raise pytest.UsageError(f"TEST_BROKER={BROKER_KIND}: expected kafka or tansu")


def pytest_collection_modifyitems(config, items):
    """kafka_only tests (three nodes, SASL, ACLs) cannot run on Tansu."""
    if BROKER_KIND == "kafka":
        return
    skip = pytest.mark.skip(reason="needs Apache Kafka (TEST_BROKER=kafka)")
    for item in items:
        if "kafka_only" in item.keywords:
            item.add_marker(skip)


def start_session_broker(kind: str, log_dir: Path):
    if kind == "kafka":
        from devtools.kafka import KafkaBroker

        return KafkaBroker().start()
    return Broker(log_path=log_dir / "tansu.log").start()


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """One real broker process for the session, on a free port.

    Its kind comes from TEST_BROKER (set by scripts/test.py): ``broker.kind`` is
    "kafka" or "tansu" and ``broker.address`` its PLAINTEXT bootstrap address. An
    Apache Kafka broker also serves SASL_SSL (``broker.client_config(user)``).
    """
    b = start_session_broker(BROKER_KIND, tmp_path_factory.mktemp("broker"))
    previous = django_settings.KAFKA["BROKERS"]
    django_settings.KAFKA["BROKERS"] = b.address
    yield b
    django_settings.KAFKA["BROKERS"] = previous
    end_of_session(b)


@pytest.fixture(scope="session")
def kafka_cluster():
    """Three Apache Kafka nodes (RF 3, min ISR 2), started on first use only."""
    if BROKER_KIND != "kafka":
        pytest.skip("needs Apache Kafka (TEST_BROKER=kafka)")
    from devtools.kafka import KafkaCluster

    cluster = KafkaCluster().start()
    yield cluster
    end_of_session(cluster)


def end_of_session(broker) -> None:
    """SIGKILL, then stop() (waits, wipes the data): a session's brokers keep
    nothing, and the cluster's controlled shutdown took 9 s of every run."""
    broker.kill()
    broker.stop()


@pytest.fixture
def topic(settings):
    """A fresh topic for this test, used by enqueue() and the consumer."""
    name = f"appointments-{uuid.uuid4().hex[:10]}"
    settings.OUTBOX = {**settings.OUTBOX, "TOPICS": {"appointment": name}}
    settings.CONSUMER = {
        **settings.CONSUMER,
        "TOPICS": [name],
        "DLQ_TOPIC": f"{name}.dlq",
        "GROUP": f"group-{name}",
    }
    return name


def database_url() -> str:
    """A DATABASE_URL that points a subprocess at the test database."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{host}:{port}/{s['NAME']}"


def subprocess_env(broker_address: str, topic: str, **extra: str) -> dict:
    """Environment for a manage.py subprocess: the test database, a broker, a topic."""
    env = os.environ.copy()
    env.update(
        {
            "DATABASE_URL": database_url(),
            "KAFKA_BROKERS": broker_address,
            "OUTBOX_APPOINTMENT_TOPIC": topic,
            "CONSUMER_TOPICS": topic,
            "CONSUMER_DLQ_TOPIC": f"{topic}.dlq",
            "CONSUMER_GROUP": f"group-{topic}",
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "KAFKA_FETCH_WAIT_MAX_MS": "10",
            "OUTBOX_POLL_INTERVAL_MS": "100",
            "DJANGO_SECRET_KEY": "test-secret-key-that-is-long-enough-for-hs256-and-django",
            "JWT_SIGNING_KEY": "test-jwt-signing-key-of-fifty-characters-or-more-for-hs256",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


@pytest.fixture
def proc_env(broker, topic):
    """Environment for a manage.py subprocess: the test database, broker and topic."""
    return subprocess_env(broker.address, topic)


class ManagedProcess:
    """A `manage.py` subprocess whose output goes to a file the test can read."""

    def __init__(self, args, env, log_path: Path):
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return True
            if self.proc.poll() is not None:
                return text in self.output
            time.sleep(0.05)
        return False

    def terminate(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def managed_processes(base_env: dict, tmp_path):
    """A ``start(*args, env=None, name=None)`` that runs `manage.py <args>` as a real
    process on ``base_env``; every process it started is killed when the block ends."""
    started = []

    def start(*args, env=None, name=None):
        log = tmp_path / f"{name or args[0]}-{len(started)}.log"
        proc = ManagedProcess(list(args), {**base_env, **(env or {})}, log)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.kill()
            proc.log.close()


@pytest.fixture
def start_process(proc_env, tmp_path):
    """Start `manage.py <args>` as a real process; every one is stopped after the test."""
    with managed_processes(proc_env, tmp_path) as start:
        yield start


def wait_until(predicate, timeout: float = 20, interval: float = 0.05):
    """Poll until predicate() is truthy; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# -- data ------------------------------------------------------------------

PASSWORD = "a-Long-test-passw0rd"


@pytest.fixture
def make_user(django_user_model):
    def make(username=None, **extra):
        return django_user_model.objects.create_user(
            username=username or f"user-{uuid.uuid4().hex[:8]}",
            password=PASSWORD,
            **extra,
        )

    return make


@pytest.fixture
def doctor(make_user):
    """Dr. Smith, like the demo doctor: Monday to Friday 09:00-17:00, 30-minute slots."""
    from datetime import time

    from appointments.models import Doctor
    from appointments.services import doctor_set_working_hours

    doctor = Doctor.objects.create(
        user=make_user("dr-who"), name="Dr. Smith", specialty="General practice"
    )
    doctor_set_working_hours(
        doctor=doctor, weekdays=range(5), start=time(9), end=time(17)
    )
    return doctor


@pytest.fixture
def patient(make_user):
    return make_user("alice")


def client_for(user) -> APIClient:
    """An API client holding a real JWT obtained through /api/auth/token."""
    client = APIClient()
    response = client.post(
        "/api/auth/token",
        {"username": user.username, "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 200, response.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    return client


@pytest.fixture
def patient_client(patient):
    return client_for(patient)


@pytest.fixture(autouse=True, scope="session")
def plain_http_in_tests():
    """Tests run with DJANGO_DEBUG=0 (production settings) but speak plain HTTP."""
    django_settings.SECURE_SSL_REDIRECT = False


@pytest.fixture(autouse=True)
def _fast_auth(settings):
    """Cheap password hashing (users are made per test) and fresh rate-limit counters."""
    from django.core.cache import cache

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()


# -- roles for the appointment and API tests ---------------------------------------


@pytest.fixture
def other_patient(make_user):
    return make_user("bob")


@pytest.fixture
def staff(make_user):
    """Clinic staff: is_staff and the appointment permissions the API asks for."""
    from django.contrib.auth.models import Permission

    user = make_user("clinic-staff", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_appointment", "change_appointment"]
        )
    )
    return user


@pytest.fixture
def doctor_client(doctor):
    return client_for(doctor.user)


@pytest.fixture
def staff_client(staff):
    return client_for(staff)
