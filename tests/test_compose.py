"""docker-compose files, Dockerfile and monitoring config: checked by parsing (no Docker here)."""

import copy
import json
import re

import pytest
import yaml

from tests.conftest import ROOT

APP_SERVICES = ("web", "relay", "consumer")


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def merge(base: dict, override: dict) -> dict:
    """Compose's merge of -f files for maps (environment, depends_on, services)."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("docker-compose.yml")


@pytest.fixture(scope="module")
def production(compose) -> dict:
    return merge(compose, load("docker-compose.prod.yml"))


def env_names_read_by_settings() -> set[str]:
    """Variables the settings read, plus those the gunicorn config reads."""
    text = "".join(
        (ROOT / "healthcare" / name).read_text()
        for name in ("settings.py", "settings_pipeline.py")
    )
    gunicorn = (ROOT / "deploy" / "gunicorn.conf.py").read_text()
    return set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', text)) | set(
        re.findall(r'os\.environ\.get\("([A-Z0-9_]+)"', gunicorn)
    )


def test_compose_has_the_services_and_no_zookeeper(compose):
    services = compose["services"]
    assert set(services) >= {
        "postgres",
        "kafka",
        "migrate",
        "web",
        "relay",
        "consumer",
        "prometheus",
        "grafana",
    }
    assert not any("zookeeper" in (s.get("image") or "") for s in services.values())


def test_kafka_is_apache_kafka_of_the_tested_version_in_kraft_mode(compose):
    from devtools.kafka_jars import KAFKA_VERSION

    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert kafka["container_name"] == "healthcare-kafka"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["CLUSTER_ID"] and "KAFKA_ZOOKEEPER_CONNECT" not in env
    # the image formats without --standalone: static voters
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:29093"
    # localhost:9092 in the container and on the host; kafka:29092 between containers
    assert "PLAINTEXT_HOST://0.0.0.0:9092" in env["KAFKA_LISTENERS"]
    assert "PLAINTEXT://kafka:29092" in env["KAFKA_LISTENERS"]
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert set(advertised) == {
        "PLAINTEXT://kafka:29092",
        "PLAINTEXT_HOST://localhost:9092",
    }
    names = {listener.split("://")[0] for listener in env["KAFKA_LISTENERS"].split(",")}
    mapped = {
        m.split(":")[0] for m in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    }
    assert names <= mapped
    assert "9092:9092" in kafka["ports"]
    health = " ".join(kafka["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-topics.sh --bootstrap-server localhost:9092" in health
    # the image's data volume, where log.dirs points
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert "kafka-data:/var/lib/kafka/data" in kafka["volumes"]


def test_kafka_has_the_settings_the_tests_needed(compose):
    """As devtools/kafka.py runs it for the tests: auto-create off, no initial
    rebalance delay, internal topics of one replica."""
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == 0
    for name in (
        "OFFSETS_TOPIC_REPLICATION_FACTOR",
        "TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "TRANSACTION_STATE_LOG_MIN_ISR",
        "SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
        "DEFAULT_REPLICATION_FACTOR",
        "MIN_INSYNC_REPLICAS",
    ):
        assert env[f"KAFKA_{name}"] == 1, name


def test_clients_timeouts_are_inside_the_brokers_bounds(compose):
    """Kafka's defaults: sessions of 6 s to 30 min, transactions up to 15 min."""
    for name in APP_SERVICES + ("migrate",):
        env = compose["services"][name]["environment"]
        assert 6000 <= int(env["KAFKA_SESSION_TIMEOUT_MS"]) <= 1_800_000, name
        assert int(env["KAFKA_TRANSACTION_TIMEOUT_MS"]) <= 900_000, name


def test_app_services_share_kafka_database_and_json_logs(compose):
    known = env_names_read_by_settings()
    for name in APP_SERVICES + ("migrate",):
        env = compose["services"][name]["environment"]
        assert env["KAFKA_BROKERS"] == "kafka:29092", name  # as in the seed
        assert "@postgres:5432/" in env["DATABASE_URL"], name
        assert env["LOG_FORMAT"] == "json" and env["DJANGO_DEBUG"] == "0", name
        unknown = set(env) - known
        assert unknown == set(), (
            f"{name}: variables that settings.py never reads: {unknown}"
        )


def test_app_services_wait_for_healthy_database_broker_and_migrations(compose):
    services = compose["services"]
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["kafka"]["condition"] == "service_healthy", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    migrate = services["migrate"]
    assert set(migrate["depends_on"]) == {"postgres", "kafka"}
    script = " ".join(migrate["command"])
    assert "manage.py migrate" in script and "manage.py kafka topics create" in script
    assert migrate["restart"] == "no"


def test_each_long_running_service_has_a_health_check(compose):
    for name, service in compose["services"].items():
        if service.get("restart") == "no":  # one-shot: migrate, cdc-register
            continue
        assert service.get("healthcheck", {}).get("test"), name
    assert "/healthz" in " ".join(compose["services"]["web"]["healthcheck"]["test"])


def test_commands_run_gunicorn_relay_and_consumer(compose):
    services = compose["services"]
    assert services["web"]["command"][0] == "gunicorn"
    assert "healthcare.wsgi:application" in services["web"]["command"]
    assert services["web"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert services["relay"]["command"][:3] == ["python", "manage.py", "run_relay"]
    assert services["consumer"]["command"][:3] == [
        "python",
        "manage.py",
        "run_consumer",
    ]
    assert (ROOT / "deploy" / "gunicorn.conf.py").exists()


def test_postgres_keeps_its_data_in_a_volume(compose):
    volumes = compose["services"]["postgres"]["volumes"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in volumes)
    assert "postgres-data" in compose["volumes"]


def test_prometheus_scrapes_web_relay_and_consumer(compose):
    prometheus = compose["services"]["prometheus"]
    assert any(v.startswith("./deploy/prometheus.yml:") for v in prometheus["volumes"])
    config = load("deploy/prometheus.yml")
    targets = {
        job["job_name"]: (job["metrics_path"], job["static_configs"][0]["targets"])
        for job in config["scrape_configs"]
    }
    assert targets["web"] == ("/metrics", ["web:8000"])
    relay_port = compose["services"]["relay"]["command"][-1]
    consumer_port = compose["services"]["consumer"]["command"][-1]
    assert targets["relay"] == ("/metrics", [f"relay:{relay_port}"])
    assert targets["consumer"] == ("/metrics", [f"consumer:{consumer_port}"])


@pytest.mark.django_db
def test_grafana_dashboard_queries_metrics_the_web_app_exports(client, compose):
    dashboard = json.loads(
        (ROOT / "deploy/grafana/dashboards/healthcare-pipeline.json").read_text()
    )
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    assert "backlog" in titles and "lag" in titles and "end-to-end delay" in titles
    exported = client.get("/metrics").content.decode()
    client.get("/healthz")  # so the HTTP histogram has samples
    exported += client.get("/metrics").content.decode()
    names = {
        re.sub(r"_(bucket|sum|count)$", "", n)
        for p in dashboard["panels"]
        for t in p["targets"]
        for n in re.findall(r"\bhealthcare_[a-z_]+", t["expr"])
    }
    assert names
    for name in names:
        assert f"\n{name}" in exported or f"# TYPE {name} " in exported, name
    provisioning = ROOT / "deploy/grafana/provisioning"
    datasource = yaml.safe_load(
        (provisioning / "datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    grafana = compose["services"]["grafana"]
    assert any(v.startswith("./deploy/grafana/dashboards:") for v in grafana["volumes"])


def test_production_overlay_runs_three_brokers_rf3_min_isr2(production):
    services = production["services"]
    brokers = [services[n] for n in ("kafka", "kafka2", "kafka3")]
    assert services["kafka"]["container_name"] == "healthcare-kafka"
    ids = {b["environment"]["KAFKA_NODE_ID"] for b in brokers}
    assert ids == {1, 2, 3}
    voters = {b["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for b in brokers}
    assert voters == {"1@kafka:29093,2@kafka2:29093,3@kafka3:29093"}
    assert len({b["environment"]["CLUSTER_ID"] for b in brokers}) == 1
    for broker in brokers:
        env = broker["environment"]
        assert broker["image"] == services["kafka"]["image"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
        assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
        # SASL_SSL only: the health check authenticates as ops
        health = " ".join(broker["healthcheck"]["test"])
        assert health.startswith("CMD-SHELL /opt/kafka/bin/kafka-topics.sh ")
        assert "--command-config /etc/kafka/secrets/ops.properties" in health
    for name in APP_SERVICES + ("migrate",):
        env = services[name]["environment"]
        assert env["KAFKA_BROKERS"] == "kafka:29092,kafka2:29092,kafka3:29092", name
        assert env["KAFKA_REPLICATION_FACTOR"] == "3", name
        assert (
            env["DJANGO_SECURE_SSL_REDIRECT"] == "1"
            and env["DJANGO_SECURE_COOKIES"] == "1"
        )
        assert ":?" in env["DJANGO_SECRET_KEY"], (
            "production must require a real secret key"
        )
        for broker in ("kafka", "kafka2", "kafka3"):
            assert (
                services[name]["depends_on"][broker]["condition"] == "service_healthy"
            )
        assert set(env) <= env_names_read_by_settings(), name


def test_dockerfile_installs_requirements_and_runs_as_non_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[1-9]", dockerfile, re.M)
    assert "pip install -r requirements.txt" in dockerfile
    assert "collectstatic" in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
