"""devtools/: the process helper and the Apache Kafka launcher's broker side.

The Kafka tests run on the session's broker (SASL_SSL, SCRAM users, ACLs) and on the
three-node cluster, started once per session and only when a test here needs it.
"""

import socket
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from devtools import process as process_helper
from devtools.process import Process, ProcessFailed, free_port, port_range
from tests.conftest import ROOT, wait_until


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    ephemeral_low = int(
        open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0]
    )
    ports = [free_port() for _ in range(25)]
    assert len(set(ports)) == 25
    low, high = port_range()
    assert all(low <= p < high <= ephemeral_low for p in ports)
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # nothing listens there


def test_a_port_handed_to_one_process_is_not_handed_to_another(tmp_path):
    """make test's two passes run side by side and both start servers on free ports."""
    script = (
        "import time; from devtools.process import free_port; "
        "print(free_port(), flush=True); time.sleep(60)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        port = int(child.stdout.readline())
        # Nothing listens on it yet (the other process's server may still be
        # starting), but it is that process's.
        assert not process_helper._claim(port)
    finally:
        child.kill()
        child.wait()
    assert process_helper._claim(port)  # its claim ended with the process


def test_a_process_that_exits_before_ready_reports_its_log(tmp_path):
    script = "import sys; print('cannot bind port 1234', flush=True); sys.exit(3)"
    proc = Process("demo", [sys.executable, "-c", script], log_path=tmp_path / "d.log")
    with pytest.raises(ProcessFailed) as failed:
        proc.start(ready=lambda: False, timeout=30)
    assert "demo exited with code 3 before it was ready" in str(failed.value)
    assert "cannot bind port 1234" in str(failed.value)


def test_a_process_never_ready_is_stopped_after_the_timeout(tmp_path):
    proc = Process(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
        log_path=tmp_path / "s.log",
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(ProcessFailed, match="sleeper was not ready within 1 s"):
        proc.start(ready=lambda: False, timeout=1)
    assert time.monotonic() - started < 15
    assert proc.proc.poll() is not None  # stopped and reaped, not left running


def test_a_process_started_by_a_thread_outlives_the_thread(tmp_path):
    """The chaos supervisor restarts processes from its thread, which ends first."""
    import threading

    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    proc = Process("sleeper", sleeper, log_path=tmp_path / "s.log")
    starter = threading.Thread(target=proc.start)
    starter.start()
    starter.join()
    try:
        time.sleep(1)
        assert proc.running
    finally:
        proc.stop()


def deliver(config: dict, topic: str, timeout_ms: int = 10000) -> KafkaError | None:
    """Produce one record and return its delivery error (None when acknowledged)."""
    producer = Producer(config | {"message.timeout.ms": timeout_ms, "acks": "all"})
    errors = []
    producer.produce(topic, b"v", key=b"k", on_delivery=lambda e, m: errors.append(e))
    producer.flush(timeout_ms / 1000 + 5)
    return errors[0] if errors else KafkaError(KafkaError._TIMED_OUT)


def new_topic(admin: AdminClient, replicas: int = 1, partitions: int = 1) -> str:
    name = f"devtools-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, partitions, replicas)])[name].result(30)
    return name


@pytest.mark.kafka_only
def test_scram_users_over_sasl_ssl_and_an_acl_for_the_one_without_write(broker):
    admin = AdminClient(broker.client_config())
    topic = new_topic(admin)
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        assert deliver(broker.client_config("admin", mechanism), topic) is None
    refused = deliver(broker.client_config("alice"), topic)
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    grant = AclBinding(
        ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", "*",
        AclOperation.WRITE, AclPermissionType.ALLOW,
    )  # fmt: skip
    admin.create_acls([grant])[grant].result(30)
    assert wait_until(
        lambda: deliver(broker.client_config("alice"), topic) is None, timeout=30
    )


@pytest.mark.kafka_only
def test_a_wrong_scram_password_is_an_authentication_error(broker):
    errors = []
    config = broker.client_config("bob", password="not-the-password")
    producer = Producer(config | {"error_cb": errors.append})
    assert wait_until(lambda: producer.poll(0.2) is not None and errors, timeout=15)
    assert errors[0].code() == KafkaError._AUTHENTICATION, errors


@pytest.mark.kafka_only
def test_three_nodes_keep_acks_all_writes_when_a_leader_is_killed(kafka_cluster):
    admin = AdminClient({"bootstrap.servers": kafka_cluster.address})
    topic = new_topic(admin, replicas=3)
    config = {"bootstrap.servers": kafka_cluster.address, "enable.idempotence": True}
    assert deliver(config, topic) is None
    leader = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader

    kafka_cluster.kill_node(leader)
    # Two in-sync replicas remain: once a new leader is elected (the cluster notices
    # a dead node within 3 s), acks=all writes succeed again.
    assert deliver(config, topic, timeout_ms=30000) is None

    kafka_cluster.start_node(leader)

    def back_in_sync():
        partition = admin.list_topics(topic, timeout=5).topics[topic].partitions[0]
        return leader in partition.isrs

    assert wait_until(back_in_sync, timeout=60)
