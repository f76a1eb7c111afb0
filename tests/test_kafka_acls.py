"""The Kafka ACLs as data (deploy/kafka-acls.yml): each maps to a confluent AclBinding."""

from pathlib import Path

import pytest
import yaml
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from messaging.topics import ensure_topics

ACLS = Path(__file__).resolve().parent.parent / "deploy" / "kafka-acls.yml"


def bindings() -> dict[str, list[AclBinding]]:
    """The file's ACLs as AclBindings, per principal (what a test on Kafka applies)."""
    found = {}
    for principal, entries in yaml.safe_load(ACLS.read_text())["principals"].items():
        found[principal] = [
            AclBinding(
                ResourceType[entry["resource_type"].upper()],
                entry["name"],
                ResourcePatternType[entry["pattern"].upper()],
                f"User:{principal}",
                "*",
                AclOperation[operation],
                AclPermissionType.ALLOW,
            )
            for entry in entries
            for operation in entry["operations"]
        ]
    return found


def test_every_client_has_a_principal_with_bindings():
    assert set(bindings()) == {
        "relay",
        "consumer",
        "dlq-replay",
        "ops",
        "migrate",
        "connect",
    }


def test_least_rights_only_the_writers_write_the_event_topic():
    writers = {
        principal
        for principal, acls in bindings().items()
        for acl in acls
        if acl.name == "appointments" and acl.operation == AclOperation.WRITE
    }
    assert writers == {"relay", "dlq-replay", "connect"}
    ops = bindings()["ops"]
    assert {acl.operation for acl in ops} <= {
        AclOperation.DESCRIBE,
        AclOperation.DESCRIBE_CONFIGS,
    }


def as_user(binding: AclBinding, user: str) -> AclBinding:
    """The same rights for one of the test broker's SCRAM users."""
    return AclBinding(
        binding.restype,
        binding.name,
        binding.resource_pattern_type,
        f"User:{user}",
        binding.host,
        binding.operation,
        binding.permission_type,
    )


def produce_as(broker, user: str, topic: str):
    """One record as ``user`` over SASL_SSL: the delivery error, or None."""
    producer = Producer(
        broker.client_config(user)
        | {"enable.idempotence": False, "message.timeout.ms": 10000}
    )
    errors = []
    producer.produce(topic, b"{}", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(15)
    return errors[0] if errors else "no delivery report"


@pytest.mark.kafka_only
def test_the_files_acls_let_the_relay_write_and_refuse_the_ops_principal(broker):
    # kafka_only: Tansu has no usable authentication or authorizer.
    admin = AdminClient(broker.client_config())  # PLAINTEXT: a super user
    ensure_topics(["appointments"], admin=admin)
    granted = [as_user(b, "alice") for b in bindings()["relay"]]
    granted += [as_user(b, "bob") for b in bindings()["ops"]]
    for future in admin.create_acls(granted).values():
        future.result(30)
    try:
        assert produce_as(broker, "alice", "appointments") is None
        refused = produce_as(broker, "bob", "appointments")
        assert refused is not None
        assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        filters = [
            AclBindingFilter(
                b.restype,
                b.name,
                b.resource_pattern_type,
                b.principal,
                b.host,
                b.operation,
                b.permission_type,
            )
            for b in granted
        ]
        for future in admin.delete_acls(filters).values():
            future.result(30)
