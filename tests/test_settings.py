"""Configuration comes from the environment; a bad value stops start-up naming the variable."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def manage_check(**env):
    full = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full.update({"DJANGO_SECRET_KEY": "x" * 50, **env})
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "variable, value",
    [
        ("KAFKA_BROKERS", "kafka1"),
        ("KAFKA_BROKERS", "kafka1:9092,:9093"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("KAFKA_LINGER_MS", "soon"),
        ("KAFKA_COMPRESSION", "brotli"),
        ("DJANGO_DEBUG", "maybe"),
        ("DATABASE_URL", "mysqlx://nowhere"),
        ("OUTBOX_BATCH_SIZE", "0"),
        ("KAFKA_TRANSACTION_TIMEOUT_MS", "soon"),
    ],
)
def test_malformed_value_stops_start_up_naming_the_variable(variable, value):
    result = manage_check(**{variable: value})
    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_sasl_without_username_is_refused():
    result = manage_check(KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    assert result.returncode == 2
    assert "KAFKA_SASL_USERNAME" in result.stderr


def test_production_requires_a_secret_key():
    result = manage_check(
        DJANGO_SECRET_KEY="",
        DJANGO_DEBUG="0",
        DEMO_MODE="0",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/healthcare",
    )
    assert result.returncode == 2
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_broker_list_and_security_reach_every_client_config(settings):
    from messaging import config as kafka

    settings.KAFKA = {
        **settings.KAFKA,
        "BROKERS": "kafka1:9092,kafka2:9092",
        "SECURITY_PROTOCOL": "SASL_SSL",
        "SASL_MECHANISM": "SCRAM-SHA-512",
        "SASL_USERNAME": "relay",
        "SASL_PASSWORD": "s3cret",
        "SSL_CA_LOCATION": "/etc/ssl/ca.pem",
    }
    for config in (
        kafka.producer_config(),
        kafka.consumer_config("g"),
        kafka.admin_config(),
    ):
        assert config["bootstrap.servers"] == "kafka1:9092,kafka2:9092"
        assert config["security.protocol"] == "SASL_SSL"
        assert config["sasl.mechanism"] == "SCRAM-SHA-512"
        assert config["sasl.username"] == "relay"
        assert config["sasl.password"] == "s3cret"
        assert config["ssl.ca.location"] == "/etc/ssl/ca.pem"


def test_producer_is_idempotent_and_tuned_from_settings(settings):
    from messaging import config as kafka

    settings.KAFKA = {
        **settings.KAFKA,
        "LINGER_MS": 20,
        "BATCH_SIZE": 65536,
        "COMPRESSION": "zstd",
    }
    config = kafka.producer_config()
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert (config["linger.ms"], config["batch.size"], config["compression.type"]) == (
        20,
        65536,
        "zstd",
    )


def test_transaction_timeout_is_a_setting_that_outlives_deliveries():
    shorter = manage_check(
        KAFKA_TRANSACTION_TIMEOUT_MS="5000", KAFKA_MESSAGE_TIMEOUT_MS="10000"
    )
    assert shorter.returncode == 2
    assert "KAFKA_TRANSACTION_TIMEOUT_MS must be at least" in shorter.stderr
    assert manage_check(KAFKA_TRANSACTION_TIMEOUT_MS="5000").returncode == 2
    ok = manage_check(
        KAFKA_TRANSACTION_TIMEOUT_MS="5000", KAFKA_MESSAGE_TIMEOUT_MS="4000"
    )
    assert ok.returncode == 0, ok.stderr


def test_each_shard_producer_gets_the_transaction_timeout(settings):
    from relay.publisher import shard_producer_settings

    # The default: Kafka's 60 s, longer than the 30 s a delivery may take.
    assert settings.KAFKA["TRANSACTION_TIMEOUT_MS"] == 60_000
    settings.KAFKA = {**settings.KAFKA, "TRANSACTION_TIMEOUT_MS": 15_000}
    assert shard_producer_settings(0)["transaction.timeout.ms"] == 15_000
