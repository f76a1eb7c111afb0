"""/healthz, /readyz, /metrics, request ids and JSON logs."""

import json
import logging
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from appointments.services import appointment_book
from healthcare.logging import ContextFilter, JsonFormatter
from notifications.models import Notification, ProcessedEvent
from relay.models import OutboxEvent
from tests.broker import Broker
from tests.conftest import ROOT
from tests.test_flow import next_weekday, seed_request
from tests.web_support import gunicorn

pytestmark = pytest.mark.django_db


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text format."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample == wanted:
            return float(value)
    raise AssertionError(f"{wanted} not in /metrics")


def test_healthz_answers_while_the_process_is_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_with_database_and_broker(client, broker):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready" and body["reasons"] == []
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"]["ok"] is True
    assert body["relay"]["pending_events"] == 0
    assert body["consumer"]["last_processed_age_seconds"] is None


def test_readyz_answers_503_naming_the_broker_when_it_is_stopped(client, settings):
    own = Broker().start()
    settings.KAFKA = {**settings.KAFKA, "BROKERS": own.address}
    try:
        assert client.get("/readyz").status_code == 200
    finally:
        own.stop()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"]["ok"] is False
    [reason] = body["reasons"]
    assert reason.startswith(f"broker unreachable at {own.address}")
    assert "relay" in body and "consumer" in body  # progress still shown


def test_readyz_shows_relay_and_consumer_falling_behind(
    client, broker, patient, doctor, settings
):
    settings.HEALTH = {**settings.HEALTH, "MAX_PENDING_AGE_S": 60}
    appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=_ten()
    )
    OutboxEvent.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    body = client.get("/readyz").json()
    assert body["relay"]["ok"] is False
    assert body["relay"]["pending_events"] == 1
    assert body["relay"]["oldest_pending_age_seconds"] >= 300


def _ten():
    from datetime import time

    return time(10)


def test_metrics_exports_exact_pipeline_figures_from_the_database(
    client, patient, doctor, patient_client
):
    for slot in ("09:00", "09:30", "10:00"):
        response = patient_client.post(
            "/api/appointments",
            seed_request(doctor, next_weekday(), slot),
            format="json",
        )
        assert response.status_code == 201, response.content
    now = timezone.now()
    first, second, third = OutboxEvent.objects.order_by("seq")
    OutboxEvent.objects.filter(pk=first.pk).update(
        created_at=now - timedelta(seconds=30),
        published_at=now - timedelta(seconds=29),
        partition=0,
        offset=0,
    )
    OutboxEvent.objects.filter(pk=second.pk).update(
        created_at=now - timedelta(minutes=10),
        published_at=now - timedelta(minutes=9),
        partition=1,
        offset=0,
    )
    OutboxEvent.objects.filter(pk=third.pk).update(
        created_at=now - timedelta(seconds=90), attempts=2, last_error="broker down"
    )
    ProcessedEvent.objects.create(
        event_id=first.event_id,
        event_type=first.type,
        topic=first.topic,
        partition=0,
        offset=0,
    )
    ProcessedEvent.objects.filter(event_id=first.event_id).update(
        processed_at=now - timedelta(seconds=28)
    )
    Notification.objects.create(
        recipient=patient,
        event_id=first.event_id,
        appointment_id=first.aggregateid,
        event_type=first.type,
        message="booked",
    )

    text = client.get("/metrics").content.decode()

    assert metric(text, "healthcare_outbox_pending_events") == 1
    assert 90 <= metric(text, "healthcare_outbox_oldest_pending_age_seconds") < 120
    assert metric(text, "healthcare_outbox_published_events", 'window="1m"') == 1
    assert metric(text, "healthcare_outbox_published_events", 'window="1h"') == 2
    assert metric(text, "healthcare_outbox_failing_events") == 1
    assert metric(text, "healthcare_outbox_failed_attempts") == 2
    assert metric(text, "healthcare_inbox_processed_events") == 1
    assert metric(text, "healthcare_events_published_not_consumed") == 1
    assert metric(
        text, "healthcare_pipeline_delay_seconds", 'quantile="0.5"'
    ) == pytest.approx(2)
    assert metric(text, "healthcare_notifications") == 1
    assert metric(text, "healthcare_appointments", 'status="booked"') == 3
    assert metric(text, "healthcare_appointments", 'status="cancelled"') == 0
    assert (
        metric(
            text,
            "healthcare_http_requests_total",
            'method="POST",route="appointments",status="201"',
        )
        >= 3
    )


def test_request_id_is_echoed_or_created_and_bound_to_logs(client, caplog):
    caplog.handler.addFilter(ContextFilter())  # as on the console handler in settings
    with caplog.at_level(logging.INFO, logger="healthcare.access"):
        given = client.get("/api/doctors?name=alice", HTTP_X_REQUEST_ID="req-123.abc")
        made = client.get("/api/doctors")
        junk = client.get("/api/doctors", HTTP_X_REQUEST_ID="no spaces <allowed>")
    assert given["X-Request-ID"] == "req-123.abc"
    assert (
        len(made["X-Request-ID"]) == 32
        and made["X-Request-ID"] != given["X-Request-ID"]
    )
    assert junk["X-Request-ID"] != "no spaces <allowed>"

    [first, second, third] = [
        r for r in caplog.records if r.name == "healthcare.access"
    ]
    assert first.request_id == "req-123.abc"
    assert first.getMessage().startswith("GET /api/doctors 401")
    assert "alice" not in first.getMessage()  # the query string is never logged
    line = json.loads(JsonFormatter().format(first))
    assert line["request_id"] == "req-123.abc" and line["status"] == 401
    assert line["logger"] == "healthcare.access" and line["level"] == "INFO"
    assert second.request_id == made["X-Request-ID"]


def test_log_format_json_writes_one_object_per_line_with_request_id(proc_env):
    script = (
        "from django.test import Client; "
        "Client().get('/healthz', HTTP_X_REQUEST_ID='probe-1'); "
        "Client().get('/api/doctors', HTTP_X_REQUEST_ID='probe-2')"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env={
            **proc_env,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "DJANGO_SECURE_SSL_REDIRECT": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [
        json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")
    ]
    access = [e for e in lines if e["logger"] == "healthcare.access"]
    # production settings: plain HTTP is redirected to HTTPS, except the probes
    assert [(e["request_id"], e["status"]) for e in access] == [
        ("probe-1", 200),
        ("probe-2", 301),
    ]
    assert all(set(e) >= {"time", "level", "logger", "message"} for e in lines)
    assert all(
        not line.strip() or line.startswith("{") for line in result.stderr.splitlines()
    )


def test_event_id_bound_with_log_context_reaches_every_line(caplog):
    from core.logcontext import log_context

    event_id = uuid.uuid4()
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.INFO), log_context(event_id=event_id):
        logging.getLogger("relay").info("published")
    [record] = [r for r in caplog.records if r.getMessage() == "published"]
    assert record.event_id == str(event_id)


def test_gunicorn_with_compose_config_adds_up_metrics_of_every_worker(
    proc_env, tmp_path
):
    """The web service's command from docker-compose.yml, with two workers."""
    import urllib.request

    settings = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "LOG_FORMAT": "json",
    }
    with gunicorn(proc_env, tmp_path / "gunicorn.log", **settings) as port:

        def get(path: str) -> tuple[int, str]:
            url = f"http://127.0.0.1:{port}{path}"
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.status, r.read().decode()

        for _ in range(20):  # spread over both workers by the kernel
            assert get("/healthz")[0] == 200
        status, text = get("/metrics")
        assert status == 200
        served = metric(
            text,
            "healthcare_http_requests_total",
            'method="GET",route="healthz",status="200"',
        )
        assert served == 20  # every worker's requests, not just this one's
        assert metric(text, "healthcare_database_up") == 1
