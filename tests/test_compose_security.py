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


def test_each_client_has_its_own_principal_with_acls():
    services = production()["services"]
    acls = yaml.safe_load((ROOT / "deploy" / "kafka-acls.yml").read_text())
    for service, principal in PRINCIPALS.items():
        env = services[service]["environment"]
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", service
        assert env["KAFKA_SASL_USERNAME"] == principal, service
        assert ":?" in env["KAFKA_SASL_PASSWORD"], service
        assert principal in acls["principals"], principal
