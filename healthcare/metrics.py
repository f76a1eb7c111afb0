"""The web app's /metrics: HTTP traffic plus pipeline figures computed from the database.

HTTP counters live in this process (or in PROMETHEUS_MULTIPROC_DIR under several
gunicorn workers). The outbox, inbox, notification and appointment figures are
read from the database at scrape time, so every replica reports the same exact
numbers. The relay and the consumer serve their own loop metrics on their ports.
"""

import logging

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from django.http import HttpResponse
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.metrics_access import metrics_access

logger = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "healthcare_http_requests_total",
    "HTTP requests answered, by method, route name and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "healthcare_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route name.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def observe_request(*, method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


def _gauge(name: str, doc: str, value, labels: dict | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    if value is not None:
        family.add_metric(list((labels or {}).values()), value)
    return family


class PipelineCollector:
    """Outbox, consumer, notification and appointment figures, read at scrape time."""

    def collect(self):
        from appointments.models import Appointment
        from healthcare.pipeline import pipeline_figures

        try:
            f = pipeline_figures()
            by_status = dict(
                Appointment.objects.order_by()
                .values_list("status")
                .annotate(n=Count("pk"))
            )
        except DatabaseError as exc:
            logger.warning("metrics: database unavailable: %s", exc)
            yield _gauge("healthcare_database_up", "1 when the database answered.", 0)
            return
        yield _gauge("healthcare_database_up", "1 when the database answered.", 1)
        yield _gauge(
            "healthcare_outbox_pending_events",
            "Outbox rows not yet published.",
            f.pending,
        )
        yield _gauge(
            "healthcare_outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished outbox row (0 when none): relay health.",
            f.oldest_pending_age_s or 0,
        )
        published = GaugeMetricFamily(
            "healthcare_outbox_published_events",
            "Outbox rows published within the window.",
            labels=["window"],
        )
        published.add_metric(["1m"], f.published_last_minute)
        published.add_metric(["1h"], f.published_last_hour)
        yield published
        yield _gauge(
            "healthcare_outbox_failing_events",
            "Unpublished outbox rows with at least one failed attempt.",
            f.failing,
        )
        yield _gauge(
            "healthcare_outbox_failed_attempts",
            "Failed publish attempts of the events still pending.",
            f.failed_attempts,
        )
        yield _gauge(
            "healthcare_inbox_processed_events",
            "Events in the consumer's inbox.",
            f.processed,
        )
        yield _gauge(
            "healthcare_consumer_last_processed_age_seconds",
            "Seconds since the consumer last recorded an event: its health.",
            f.last_processed_age_s,
        )
        yield _gauge(
            "healthcare_events_published_not_consumed",
            "Events published in the last hour that the consumer has not recorded yet.",
            f.published_not_consumed_last_hour,
        )
        delay = GaugeMetricFamily(
            "healthcare_pipeline_delay_seconds",
            "Outbox commit to inbox commit, for events published in the last 5 minutes.",
            labels=["quantile"],
        )
        for label, key in (
            ("0.5", "p50"),
            ("0.95", "p95"),
            ("0.99", "p99"),
            ("1", "max"),
        ):
            if key in f.delay_s:
                delay.add_metric([label], f.delay_s[key])
        yield delay
        yield _gauge(
            "healthcare_notifications", "Notifications stored.", f.notifications
        )
        appointments = GaugeMetricFamily(
            "healthcare_appointments", "Appointments by status.", labels=["status"]
        )
        for status in Appointment.Status.values:
            appointments.add_metric([status], by_status.get(status, 0))
        yield appointments


@metrics_access
def metrics_view(request):
    """Prometheus text: HTTP metrics (of every gunicorn worker), then the pipeline's."""
    if settings.PROMETHEUS_MULTIPROC_DIR:
        from prometheus_client import multiprocess

        http = CollectorRegistry()
        multiprocess.MultiProcessCollector(http)
    else:
        http = REGISTRY
    pipeline = CollectorRegistry(auto_describe=False)
    pipeline.register(PipelineCollector())
    body = generate_latest(http) + generate_latest(pipeline)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
