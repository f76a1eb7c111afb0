"""The compose cdc profile: Debezium's Connect image, the connector registered."""

import pytest

from tests.test_compose import env_names_read_by_settings, load


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("docker-compose.yml")


def test_postgres_runs_with_logical_wal(compose):
    command = compose["services"]["postgres"]["command"]
    assert "wal_level=logical" in command


def test_connect_is_debezium_of_the_tested_version_in_the_cdc_profile(compose):
    from devtools.connect import DEBEZIUM_VERSION

    connect = compose["services"]["connect"]
    assert connect["profiles"] == ["cdc"]
    assert connect["image"] == f"quay.io/debezium/connect:{DEBEZIUM_VERSION}"
    env = connect["environment"]
    assert env["BOOTSTRAP_SERVERS"] == "kafka:29092"
    assert env["CONNECT_CONFIG_PROVIDERS"] == "env"
    assert env["CONNECT_CONFIG_PROVIDERS_ENV_CLASS"].endswith("EnvVarConfigProvider")
    assert "CDC_DATABASE_PASSWORD" in env
    assert connect["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "8083" in " ".join(connect["healthcheck"]["test"])


def test_the_connector_is_registered_once_connect_is_healthy(compose):
    register = compose["services"]["cdc-register"]
    assert register["profiles"] == ["cdc"] and register["restart"] == "no"
    script = " ".join(register["command"])
    assert script.index("outbox_cdc setup") < script.index("outbox_cdc register")
    assert register["depends_on"]["connect"]["condition"] == "service_healthy"
    assert register["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    env = register["environment"]
    assert env["CDC_CONNECT_URL"] == "http://connect:8083"
    assert env["CDC_DATABASE_HOST"] == "postgres"
    assert set(env) - env_names_read_by_settings() == set()


def test_the_mode_switch_reaches_every_app_service(compose):
    for name in ("web", "relay", "consumer", "migrate"):
        assert compose["services"][name]["environment"]["OUTBOX_RELAY"] == (
            "${OUTBOX_RELAY:-poll}"
        )
