"""SASL_SSL with SCRAM-SHA-512 end to end on Apache Kafka, settings from the environment.

kafka_only: Tansu has no usable SASL (DESIGN.md section 9). The session broker's
SASL_SSL listener has the SCRAM users of devtools/kafka.py: admin (a super user),
alice and bob (only the ACLs a test grants).
"""

import subprocess
import sys
import time

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from notifications.models import ProcessedEvent
from relay.models import OutboxEvent
from tests.conftest import ROOT, wait_until
from tests.consumer_kit import (
    booked_events,
    committed_offsets,
    make_people,
    run_consumer,
)
from tests.kafka_utils import read_topic
from tests.relay_support import enqueue_events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka_only]

AUTH_FAILED = "SASL authentication error"


def sasl_env(broker, user="admin", password=None) -> dict:
    return {
        "KAFKA_BROKERS": broker.sasl_address,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SASL_PASSWORD": password or broker.scram_users[user],
        "KAFKA_SSL_CA_LOCATION": str(broker.ca_file),
    }


def manage(proc_env, env, *args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env={**proc_env, **env}, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def no_commits(broker, group: str, topic: str) -> bool:
    try:
        return committed_offsets(broker.address, group, topic) == {}
    except KafkaException:  # the offsets coordinator is still loading
        return False


def grant(broker, resource, name, user, operation, pattern="LITERAL") -> None:
    admin = AdminClient(broker.client_config())
    acl = AclBinding(
        resource, name, getattr(ResourcePatternType, pattern), f"User:{user}", "*",
        operation, AclPermissionType.ALLOW,
    )  # fmt: skip
    admin.create_acls([acl])[acl].result(30)


def test_relay_consumer_dead_letters_ops_and_readyz_over_sasl_ssl(
    broker, topic, proc_env, start_process, make_user, settings, client
):
    env = sasl_env(broker)
    created = manage(proc_env, env, "kafka", "topics", "create")
    assert created.returncode == 0, created.stderr
    relay = start_process("run_relay", env=env, name="relay")
    consumer = run_consumer(start_process, "--no-email", env=env)
    enqueue_events(booked_events(make_people(make_user), 10))
    # A record no handler can read goes to the dead-letter topic over SASL_SSL too.
    producer = Producer(broker.client_config())
    producer.produce(topic, key=b"poison", value=b"not json")
    producer.flush(10)
    assert wait_until(lambda: ProcessedEvent.objects.count() == 10, timeout=60), (
        relay.output + consumer.output
    )
    assert not OutboxEvent.objects.pending().exists()
    assert len(read_topic(broker.address, f"{topic}.dlq", expect=1)) == 1
    assert consumer.wait_for_output("dead-lettered", timeout=20), consumer.output
    assert relay.terminate() == 0 and consumer.terminate() == 0

    described = manage(proc_env, env, "kafka", "groups", "describe", f"group-{topic}")
    assert described.returncode == 0, described.stderr
    assert "TOTAL LAG 0" in described.stdout
    replayed = manage(proc_env, env, "dlq_replay")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 dead letter(s)" in replayed.stdout

    settings.KAFKA = {
        **settings.KAFKA,
        **{
            "BROKERS": broker.sasl_address,
            "SECURITY_PROTOCOL": "SASL_SSL",
            "SASL_MECHANISM": "SCRAM-SHA-512",
            "SASL_USERNAME": "admin",
            "SASL_PASSWORD": broker.scram_users["admin"],
            "SSL_CA_LOCATION": str(broker.ca_file),
        },
    }
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.content


def test_a_wrong_password_is_named_within_10_s_and_nothing_is_marked_or_committed(
    broker, topic, proc_env, start_process, make_user, settings, client
):
    env = sasl_env(broker, "bob", password="not-bobs-password")
    started = time.monotonic()
    listed = manage(proc_env, env, "kafka", "topics", "list", "--timeout", "8")
    assert listed.returncode != 0
    assert time.monotonic() - started < 10 + 5  # the command's own start-up
    assert AUTH_FAILED in listed.stderr, listed.stderr

    assert manage(proc_env, {}, "kafka", "topics", "create").returncode == 0
    enqueue_events(booked_events(make_people(make_user), 3))
    relay = start_process("run_relay", env=env, name="relay")
    consumer = run_consumer(start_process, "--no-email", env=env)
    for proc in (relay, consumer):
        assert proc.wait_for_output(AUTH_FAILED, timeout=20), proc.output
    time.sleep(3)  # they keep retrying, with backoff
    assert relay.proc.poll() is None and consumer.proc.poll() is None
    assert OutboxEvent.objects.pending().count() == 3
    assert wait_until(lambda: no_commits(broker, f"group-{topic}", topic), timeout=20)
    for proc in (relay, consumer):
        lines = [ln for ln in proc.output.splitlines() if AUTH_FAILED in ln]
        assert len(lines) <= 3, lines  # one line now and then, not a flood
    relay.kill()
    consumer.kill()

    settings.KAFKA = {
        **settings.KAFKA,
        "BROKERS": broker.sasl_address,
        "SECURITY_PROTOCOL": "SASL_SSL",
        "SASL_MECHANISM": "SCRAM-SHA-512",
        "SASL_USERNAME": "bob",
        "SASL_PASSWORD": "not-bobs-password",
        "SSL_CA_LOCATION": str(broker.ca_file),
    }
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert AUTH_FAILED in " ".join(not_ready.json()["reasons"]), not_ready.json()


def test_a_relay_without_write_on_the_topic_marks_nothing_until_it_is_granted(
    broker, topic, proc_env, start_process, make_user
):
    assert (
        manage(proc_env, sasl_env(broker), "kafka", "topics", "create").returncode == 0
    )
    # alice may see the topic and use the relay's transactional ids, not write.
    grant(broker, ResourceType.TOPIC, topic, "alice", AclOperation.DESCRIBE)
    grant(
        broker, ResourceType.TRANSACTIONAL_ID, "healthcare", "alice",
        AclOperation.WRITE, pattern="PREFIXED",
    )  # fmt: skip
    enqueue_events(booked_events(make_people(make_user), 4))
    relay = start_process("run_relay", env=sasl_env(broker, "alice"), name="relay")
    assert relay.wait_for_output("TOPIC_AUTHORIZATION_FAILED", timeout=30), relay.output
    time.sleep(2)
    assert OutboxEvent.objects.pending().count() == 4

    grant(broker, ResourceType.TOPIC, topic, "alice", AclOperation.WRITE)
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=60), (
        relay.output
    )
    assert len(read_topic(broker.address, topic, expect=4)) == 4
    assert relay.terminate() == 0
