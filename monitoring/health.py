"""Liveness and readiness: /healthz (the process answers) and /readyz (it can work).

Ready means the database answers and the broker is reachable; the answer names
what is not. The relay's and the consumer's progress (from the database, bounded
queries on indexed columns) is shown too, as information: the web app serves
bookings while they lag.
"""

import threading

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from core.metrics_access import may_see_details, probe_summary
from messaging.config import admin_client, failure_reason
from monitoring.selectors import consumer_progress
from relay.cdc import cdc_enabled, cdc_health
from relay.selectors import outbox_backlog

_admins: dict[tuple, AdminClient] = {}
_admins_lock = threading.Lock()


def _admin_key() -> tuple:
    kafka = settings.KAFKA
    return tuple(
        kafka[k]
        for k in ("BROKERS", "SECURITY_PROTOCOL", "SASL_USERNAME", "SASL_PASSWORD")
    )


def _admin() -> AdminClient:
    """One admin client per broker list and login, reused across probes (it keeps
    connections)."""
    key = _admin_key()
    with _admins_lock:
        if key not in _admins:
            _admins[key] = admin_client()
        return _admins[key]


def check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except DatabaseError as exc:
        return {"ok": False, "error": f"database unreachable: {exc}".strip()}


def check_broker() -> dict:
    timeout = settings.HEALTH["BROKER_TIMEOUT_S"]
    try:
        admin = _admin()
        brokers = admin.list_topics(timeout=timeout).brokers
    except KafkaException as exc:
        admin.poll(0)  # serves error_cb: a refused login is the real reason
        with _admins_lock:  # a fresh client next time, not one stuck reconnecting
            _admins.pop(_admin_key(), None)
        return {
            "ok": False,
            "error": f"broker unreachable at {settings.KAFKA['BROKERS']}: "
            f"{failure_reason(exc.args[0])}",
        }
    return {"ok": True, "brokers": len(brokers)}


def pipeline_health() -> dict:
    """How far behind the relay and the consumer are, from the database."""
    now = timezone.now()
    backlog = outbox_backlog(now=now)
    consumer = consumer_progress(now=now)
    limit = settings.HEALTH["MAX_PENDING_AGE_S"]
    oldest = backlog.oldest_pending_age_s
    last = consumer.processed_last_age_s
    unconsumed = consumer.published_not_consumed_last_hour
    if cdc_enabled():
        # Debezium reads the WAL and marks nothing: rows stay pending by design, so
        # their age says nothing; the slot's retained bytes (check "cdc") do.
        relay = {"ok": True, "mode": "cdc"}
    else:
        relay = {
            "ok": oldest is None or oldest <= limit,
            "mode": "poll",
            "pending_events": backlog.pending,
            "oldest_pending_age_seconds": None if oldest is None else round(oldest, 3),
            "failing_events": backlog.failing,
        }
    return {
        "relay": relay,
        "consumer": {
            "ok": unconsumed == 0 or (last is not None and last <= limit),
            "published_not_consumed_last_hour": unconsumed,
            "last_processed_age_seconds": None if last is None else round(last, 3),
        },
    }


@never_cache
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@probe_summary
def readyz(request):
    checks = {"database": check_database(), "broker": check_broker()}
    progress = {}
    try:
        if checks["database"]["ok"] and cdc_enabled():
            checks["cdc"] = (
                cdc_health()
            )  # an unread slot keeps WAL until the disk fills
        if checks["database"]["ok"] and may_see_details(request):  # trusted only
            progress = pipeline_health()
    except DatabaseError as exc:
        checks["database"] = {"ok": False, "error": f"database unreachable: {exc}"}
    ready = all(c["ok"] for c in checks.values())
    body = {
        "status": "ready" if ready else "not ready",
        "reasons": [c["error"] for c in checks.values() if not c["ok"]],
        "checks": checks,
        **progress,
    }
    return JsonResponse(body, status=200 if ready else 503)
