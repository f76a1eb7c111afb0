"""The production overlay's Kafka: SASL_SSL only on published ports, a principal each."""

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
