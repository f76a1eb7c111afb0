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

    settings.KAFKA = {**settings.KAFKA, "LINGER_MS": 20, "BATCH_SIZE": 65536, "COMPRESSION": "zstd"}
    config = kafka.producer_config()
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert (config["linger.ms"], config["batch.size"], config["compression.type"]) == (
        20,
        65536,
        "zstd",
    )
