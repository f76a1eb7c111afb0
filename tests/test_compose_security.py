"""The production overlay's Kafka: SASL_SSL only on published ports, a principal each."""

import yaml

from tests.conftest import ROOT
from tests.test_compose import load, merge

PRINCIPALS = {
    "web": "ops",
    "relay": "relay",
    "consumer": "consumer",
    "migrate": "migrate",
}


def production() -> dict:
    return merge(load("docker-compose.yml"), load("docker-compose.prod.yml"))


def test_brokers_publish_no_plaintext_listener_on_the_host():
    services = production()["services"]
    for name in ("kafka", "kafka2", "kafka3"):
        env = services[name]["environment"]
        protocols = dict(
            pair.split(":")
            for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
        )
        listeners = {
            item.split("://")[0]: item.split("://")[1]
            for item in env["KAFKA_LISTENERS"].split(",")
        }
        host_side = [
            n for n, address in listeners.items() if address.startswith("0.0.0.0")
        ]
        assert host_side == ["EXTERNAL"], name
        assert protocols["EXTERNAL"] == protocols["INTERNAL"] == "SASL_SSL", name
        assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        assert "StandardAuthorizer" in env["KAFKA_AUTHORIZER_CLASS_NAME"]
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        assert "--add-scram" in " ".join(services[name]["command"])


def test_the_scram_users_are_made_at_format_time_then_the_images_entrypoint_runs():
    """Every principal of deploy/kafka-acls.yml that a compose service uses, and the
    broker's, gets a SCRAM-SHA-512 user before the storage is first formatted; the
    passwords are no KAFKA_* variable (those become server.properties lines)."""
    services = production()["services"]
    for name in ("kafka", "kafka2", "kafka3"):
        script = services[name]["command"][-1]
        assert services[name]["command"][:2] == ["bash", "-c"], name
        assert "/opt/kafka/bin/kafka-storage.sh format --ignore-formatted" in script
        assert script.rstrip().endswith("exec /etc/kafka/docker/run"), name
        for user in ("broker", *PRINCIPALS.values(), "dlq-replay"):
            variable = "SCRAM_" + user.upper().replace("-", "_") + "_PASSWORD"
            assert f"[name={user},password=$${variable}]" in script, user
            assert ":?" in services[name]["environment"][variable], user
        assert not any(
            n.startswith("KAFKA_") and n.endswith("_PASSWORD")
            for n in services[name]["environment"]
        )


def test_the_ssl_settings_reach_server_properties_as_given():
    """apache/kafka's configure replaces the keystore settings (by file names and
    password files) only for listeners named SSL or SASL_SSL: the overlay's are
    INTERNAL and EXTERNAL, so its PEM keystore and truststore are used as written."""
    from devtools.kafka_image import configure, server_properties

    env = production()["services"]["kafka"]["environment"]
    names = {item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")}
    assert not names & {"SSL", "SASL_SSL", "SASL_PLAINTEXT"}
    properties = server_properties(configure(env, ROOT / "deploy" / "kafka-secrets"))
    assert properties["ssl.keystore.type"] == "PEM"
    assert properties["ssl.keystore.location"] == "/etc/kafka/secrets/broker.pem"
    assert properties["ssl.truststore.location"] == "/etc/kafka/secrets/ca.pem"
    assert "ssl.keystore.password" not in properties  # Kafka refuses one with PEM


def acl_allows(principal: str, resource_type: str, name: str, operation: str) -> bool:
    """Whether deploy/kafka-acls.yml lets ``principal`` do ``operation`` on ``name``."""
    from tests.test_kafka_acls import ACLS

    entries = yaml.safe_load(ACLS.read_text())["principals"][principal]
    return any(
        entry["resource_type"] == resource_type
        and operation in entry["operations"]
        and (
            entry["name"] in ("*", name)
            or (entry["pattern"] == "prefixed" and name.startswith(entry["name"]))
        )
        for entry in entries
    )


def test_connect_runs_on_sasl_ssl_as_principal_connect_with_what_it_needs():
    """The cdc profile's worker in the production overlay: SASL_SSL for the worker's
    own clients and, given again, for the connector's producer (it takes only
    producer.* settings); three replicas of its internal topics; the ACLs cover its
    group, its topics and Debezium's heartbeats; its password is never printed."""
    from devtools.connect_image import logged_secrets, worker_properties

    services = production()["services"]
    connect = services["connect"]
    env = connect["environment"]
    worker = worker_properties(env)
    assert worker["bootstrap.servers"] == "kafka:29092,kafka2:29092,kafka3:29092"
    for prefix in ("", "producer."):
        assert worker[f"{prefix}security.protocol"] == "SASL_SSL"
        assert worker[f"{prefix}sasl.mechanism"] == "SCRAM-SHA-512"
        assert 'username="connect"' in worker[f"{prefix}sasl.jaas.config"]
        assert "${KAFKA_CONNECT_PASSWORD:?" in worker[f"{prefix}sasl.jaas.config"]
        assert worker[f"{prefix}ssl.truststore.location"] == "/etc/kafka/secrets/ca.pem"
    assert (
        "./deploy/kafka-secrets/ca.pem:/etc/kafka/secrets/ca.pem:ro"
        in (connect["volumes"])
    )
    assert logged_secrets(env) == []
    for kind in ("config", "offset", "status"):
        assert worker[f"{kind}.storage.replication.factor"] == "3"
    for kafka in ("kafka", "kafka2", "kafka3"):
        assert connect["depends_on"][kafka]["condition"] == "service_healthy"
        script = services[kafka]["command"][-1]
        assert "[name=connect,password=$$SCRAM_CONNECT_PASSWORD]" in script

    from django.conf import settings

    group, topics = (
        worker["group.id"],
        [worker[f"{kind}.storage.topic"] for kind in ("config", "offset", "status")],
    )
    assert acl_allows("connect", "group", group, "READ")
    for topic in topics:
        for operation in ("CREATE", "READ", "WRITE", "DESCRIBE_CONFIGS"):
            assert acl_allows("connect", "topic", topic, operation), (topic, operation)
    heartbeat = f"__debezium-heartbeat.{settings.CDC['TOPIC_PREFIX']}"
    for operation in ("CREATE", "WRITE"):
        assert acl_allows("connect", "topic", heartbeat, operation)
    assert acl_allows("connect", "topic", "appointments", "WRITE")
    assert not acl_allows("connect", "topic", "appointments", "READ")


def test_the_connector_is_registered_by_a_principal_the_settings_accept():
    """Django's settings refuse SASL_SSL without a user: cdc-register runs as ops."""
    from tests.test_compose import env_names_read_by_settings

    register = production()["services"]["cdc-register"]
    env = register["environment"]
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_USERNAME"] == "ops"
    assert env["KAFKA_SASL_PASSWORD"].startswith("${KAFKA_OPS_PASSWORD:?")
    assert (
        "./deploy/kafka-secrets/ca.pem:/etc/kafka/secrets/ca.pem:ro"
        in (register["volumes"])
    )
    assert set(env) - env_names_read_by_settings() == set()


def test_the_dev_worker_gets_its_storage_settings():
    """Only CONNECT_* variables reach the worker: the replication factors and the
    env config provider (for the connector's database password)."""
    from devtools.connect_image import worker_properties
    from tests.test_compose import load

    worker = worker_properties(
        load("docker-compose.yml")["services"]["connect"]["environment"]
    )
    assert worker["config.storage.replication.factor"] == "1"
    assert worker["config.providers"] == "env"
    assert worker["group.id"] == "healthcare-connect"
    assert worker["bootstrap.servers"] == "kafka:29092"
    assert (
        "127.0.0.1:8083:8083"
        in load("docker-compose.yml")["services"]["connect"]["ports"]
    )
