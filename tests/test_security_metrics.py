"""/metrics and /readyz details for the token or an allowed network; /healthz open."""

import pytest

pytestmark = pytest.mark.django_db

OUTSIDE = {"REMOTE_ADDR": "203.0.113.5"}


@pytest.fixture
def locked(settings):
    settings.METRICS_TOKEN = "metrics-token-for-the-tests"
    settings.METRICS_ALLOWED_NETWORKS = ["10.1.0.0/16"]


def test_metrics_need_the_token_or_an_allowed_address(client, locked):
    assert client.get("/metrics", **OUTSIDE).status_code == 403
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope", **OUTSIDE)
    assert wrong.status_code == 403
    good = client.get(
        "/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-for-the-tests", **OUTSIDE
    )
    assert good.status_code == 200
    assert b"healthcare_http_requests_total" in good.content
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


def test_an_anonymous_probe_sees_the_status_and_failing_names_only(
    client, locked, settings
):
    settings.KAFKA = {**settings.KAFKA, "BROKERS": "127.0.0.1:1"}
    settings.HEALTH = {**settings.HEALTH, "BROKER_TIMEOUT_S": 0.5}
    response = client.get("/readyz", **OUTSIDE)
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "failing": ["broker"]}
    assert b"127.0.0.1" not in response.content
    detailed = client.get("/readyz", REMOTE_ADDR="10.1.2.3")
    assert detailed.status_code == 503
    assert "127.0.0.1:1" in detailed.json()["reasons"][0]


def test_healthz_stays_open(client, locked):
    assert client.get("/healthz", **OUTSIDE).status_code == 200


def test_malformed_networks_stop_start_up():
    from tests.test_settings import manage_check

    result = manage_check(METRICS_ALLOWED_NETWORKS="10.0.0.0/8,office")
    assert result.returncode == 2
    assert "METRICS_ALLOWED_NETWORKS" in result.stderr
