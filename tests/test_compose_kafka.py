"""docker-compose's Kafka configuration, run on a real Apache Kafka (no Docker here).

The compose kafka service's environment becomes server.properties by the apache/kafka
image's rule (devtools/kafka_image.py), checked against the image's own
KafkaDockerWrapper from the pinned jar, which also formats the storage as the image
does. Hosts and ports move to loopback, container paths to a temporary directory, and
devtools.kafka starts the node from the cached jars. It must serve metadata, accept
the compose clients' settings (session and transaction timeouts) and deliver a
committed transaction, never an aborted one, to a read_committed consumer. The same for
one node of the production overlay: SCRAM users made by its own format step, SASL_SSL,
the StandardAuthorizer with deploy/kafka-acls.yml, each client as its own principal,
the cdc profile's Connect worker too (its settings by the Debezium image's rule).

kafka_only: the broker is Apache Kafka's.
"""

import re

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from devtools.connect_image import worker_properties
from messaging.config import admin_client, consumer_config, producer_config
from messaging.topics import ensure_topics
from tests.compose_kafka import (
    Loopback,
    broker_secrets,
    client_settings,
    image_properties,
    interpolate,
    run_format_script,
    start_node,
)
from tests.test_compose import load, merge
from tests.test_kafka_acls import bindings

pytestmark = pytest.mark.kafka_only

TOPIC = "appointments"
PASSWORDS = {
    f"KAFKA_{name}_PASSWORD": f"{name.lower()}-secret"
    for name in (
        "BROKER",
        "RELAY",
        "CONSUMER",
        "DLQ_REPLAY",
        "OPS",
        "MIGRATE",
        "CONNECT",
    )
}
# One node of the three: its own quorum, and internal topics of one replica.
ONE_OF_THREE = {
    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:29093",
    "KAFKA_DEFAULT_REPLICATION_FACTOR": "1",
    "KAFKA_MIN_INSYNC_REPLICAS": "1",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
}


def healthcheck_address(service: dict) -> str:
    """The bootstrap address the service's health check uses inside the container."""
    words = " ".join(service["healthcheck"]["test"]).split()
    return words[words.index("--bootstrap-server") + 1]


def broker_config(admin: AdminClient, names: list[str]) -> dict:
    resource = ConfigResource(ResourceType.BROKER, "1")
    entries = admin.describe_configs([resource])[resource].result(30)
    return {name: entries[name].value for name in names}


def assert_client_settings_fit_the_broker(admin: AdminClient, kafka: dict) -> None:
    bounds = broker_config(
        admin,
        [
            "group.min.session.timeout.ms",
            "group.max.session.timeout.ms",
            "transaction.max.timeout.ms",
        ],
    )
    session = kafka["SESSION_TIMEOUT_MS"]
    assert int(bounds["group.min.session.timeout.ms"]) <= session
    assert session <= int(bounds["group.max.session.timeout.ms"])
    assert kafka["TRANSACTION_TIMEOUT_MS"] <= int(bounds["transaction.max.timeout.ms"])


def produce_aborted_then_committed(transactional_id: str) -> list[bytes]:
    """One aborted transaction, then a committed one, on partition 0 (the project's
    producer settings): a read_committed reader must skip the first."""
    producer = Producer(producer_config(**{"transactional.id": transactional_id}))
    producer.init_transactions(30)
    for values, commit in (([b"aborted"], False), ([b"one", b"two", b"three"], True)):
        producer.begin_transaction()
        for value in values:
            producer.produce(TOPIC, value=value, key=value, partition=0)
        producer.flush(30)
        (producer.commit_transaction if commit else producer.abort_transaction)(30)
    return [b"one", b"two", b"three"]


def read_committed(group: str, count: int) -> list[bytes]:
    """``count`` records read in group ``group`` with the project's consumer settings
    (read_committed). The aborted record lies before the committed ones on the same
    partition: reading exactly those shows it was skipped."""
    config = consumer_config(group)
    assert config["isolation.level"] == "read_committed"
    consumer = Consumer(config)
    consumer.subscribe([TOPIC])
    seen = []
    try:
        for _ in range(120):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen.append(message.value())
            if len(seen) >= count:
                break
    finally:
        consumer.close()
    return seen


def use_client(settings, kafka: dict) -> None:
    settings.KAFKA = {**settings.KAFKA, **kafka}


def test_the_compose_broker_runs_and_delivers_committed_transactions(
    tmp_path, settings
):
    compose = load("docker-compose.yml")
    service = compose["services"]["kafka"]
    loopback = Loopback(tmp_path)
    env = loopback.env(service["environment"])
    config = image_properties(env, loopback.secrets, tmp_path)
    client = {"bootstrap.servers": loopback.address(healthcheck_address(service))}
    node = start_node(config, client, loopback, env["CLUSTER_ID"])
    try:
        admin = AdminClient(client)
        brokers = admin.list_topics(timeout=10).brokers
        assert [(b.id, b.port) for b in brokers.values()] == [(1, loopback.ports[9092])]
        assert broker_config(
            admin, ["auto.create.topics.enable", "group.initial.rebalance.delay.ms"]
        ) == {
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
        }
        relay_env = compose["services"]["relay"]["environment"]
        kafka = client_settings(relay_env, loopback)
        assert_client_settings_fit_the_broker(admin, kafka)
        use_client(settings, kafka)  # the app's clients, on the internal listener
        ensure_topics([TOPIC], partitions=3, replication_factor=1)
        expected = produce_aborted_then_committed("healthcare-outbox-compose-shard-0")
        assert read_committed("notification-service-group", 3) == expected
    finally:
        node.stop()


def production_node(tmp_path):
    """Node 1 of the production overlay on loopback: secrets, its format step."""
    production = merge(load("docker-compose.yml"), load("docker-compose.prod.yml"))
    services = production["services"]
    loopback = Loopback(tmp_path)
    broker_secrets(loopback.secrets)
    env = loopback.env(services["kafka"]["environment"] | ONE_OF_THREE, PASSWORDS)
    script = interpolate(services["kafka"]["command"][2], {})
    run_format_script(loopback.value(script), env, tmp_path)
    config = image_properties(env, loopback.secrets, tmp_path)
    return services, loopback, env, config


def principal(services: dict, service: str, loopback: Loopback) -> dict:
    """settings.KAFKA of a compose service (its principal, password, CA)."""
    app_env = {
        name: interpolate(value, PASSWORDS)
        for name, value in services[service]["environment"].items()
        if name.startswith("KAFKA_")
    }
    return client_settings(app_env, loopback)


def sasl_client(kafka: dict) -> dict:
    return {
        "bootstrap.servers": kafka["BROKERS"],
        "security.protocol": kafka["SECURITY_PROTOCOL"],
        "sasl.mechanism": kafka["SASL_MECHANISM"],
        "sasl.username": kafka["SASL_USERNAME"],
        "sasl.password": kafka["SASL_PASSWORD"],
        "ssl.ca.location": kafka["SSL_CA_LOCATION"],
    }


def test_one_production_node_serves_sasl_ssl_with_the_acls(tmp_path, settings):
    services, loopback, env, config = production_node(tmp_path)
    assert config["authorizer.class.name"].endswith("StandardAuthorizer")
    assert config["ssl.keystore.location"] == str(loopback.secrets / "broker.pem")
    ops = principal(services, "web", loopback)
    health = sasl_client(ops) | {
        "bootstrap.servers": loopback.address(healthcheck_address(services["kafka"]))
    }
    node = start_node(config, health, loopback, env["CLUSTER_ID"])
    try:
        broker = sasl_client(ops) | {
            "sasl.username": "broker",
            "sasl.password": PASSWORDS["KAFKA_BROKER_PASSWORD"],
        }
        acls = [b for found in bindings().values() for b in found]
        admin = AdminClient(broker)  # the super user applies the ACLs
        for future in admin.create_acls(acls).values():
            future.result(30)
        use_client(settings, principal(services, "migrate", loopback))
        ensure_topics([TOPIC], partitions=3, replication_factor=1)
        use_client(settings, principal(services, "relay", loopback))
        expected = produce_aborted_then_committed("healthcare-outbox-compose-shard-0")
        consumer = principal(services, "consumer", loopback)
        use_client(settings, consumer)
        assert read_committed("notification-service-group", 3) == expected
        use_client(settings, ops)
        assert TOPIC in admin_client().list_topics(timeout=10).topics
        connect_does_what_the_worker_does(services, loopback, settings)
    finally:
        node.stop()


def connect_client(services: dict, loopback: Loopback) -> tuple[dict, dict]:
    """The Connect worker's properties, and librdkafka settings equal to its producer's."""
    env = {
        name: loopback.value(interpolate(str(value), PASSWORDS))
        for name, value in services["connect"]["environment"].items()
        if name != "CDC_DATABASE_PASSWORD"  # the connector's, not the worker's
    }
    worker = worker_properties(env)
    for prefix in ("", "producer."):  # the worker's own clients, the connector's
        assert worker[f"{prefix}security.protocol"] == "SASL_SSL"
        assert worker[f"{prefix}sasl.mechanism"] == "SCRAM-SHA-512"
        assert worker[f"{prefix}ssl.truststore.type"] == "PEM"
    jaas = worker["producer.sasl.jaas.config"]
    assert jaas == worker["sasl.jaas.config"]
    client = {
        "bootstrap.servers": worker["bootstrap.servers"],
        "security.protocol": worker["producer.security.protocol"],
        "sasl.mechanism": worker["producer.sasl.mechanism"],
        "sasl.username": re.search(r'username="([^"]+)"', jaas)[1],
        "sasl.password": re.search(r'password="([^"]+)"', jaas)[1],
        "ssl.ca.location": worker["producer.ssl.truststore.location"],
    }
    return worker, client


def connect_does_what_the_worker_does(services, loopback, settings) -> None:
    """As principal connect: create its internal topics and Debezium's heartbeat
    topic, join its group, write events and heartbeats; never read the events."""
    worker, client = connect_client(services, loopback)
    assert client["sasl.username"] == "connect"
    heartbeat = f"__debezium-heartbeat.{settings.CDC['TOPIC_PREFIX']}"
    internal = [
        worker[f"{kind}.storage.topic"] for kind in ("config", "offset", "status")
    ]
    admin = AdminClient(client)
    created = admin.create_topics(
        [NewTopic(name, 1, 1) for name in [*internal, heartbeat]]
    )
    for future in created.values():
        future.result(30)
    producer = Producer(client | {"enable.idempotence": True})
    failed = []
    for topic in (TOPIC, heartbeat, internal[0]):
        producer.produce(
            topic, b"x", on_delivery=lambda err, _: err and failed.append(err)
        )
    assert producer.flush(30) == 0 and failed == []
    member = Consumer(client | {"group.id": worker["group.id"]})
    member.subscribe([internal[0]])
    try:
        for _ in range(60):
            member.poll(0.5)
            if member.assignment():
                break
        assert member.assignment(), "the worker's group could not be joined"
    finally:
        member.close()
    reader = Consumer(
        client | {"group.id": worker["group.id"], "auto.offset.reset": "earliest"}
    )
    reader.subscribe([TOPIC])
    try:
        refused = None
        for _ in range(40):
            message = reader.poll(0.5)
            if message is not None and message.error() is not None:
                refused = message.error()
                break
        assert (
            refused is not None
            and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        )
    finally:
        reader.close()
