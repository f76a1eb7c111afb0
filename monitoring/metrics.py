"""The web app's /metrics: HTTP traffic plus pipeline figures computed from the database.

HTTP counters live in this process (or in PROMETHEUS_MULTIPROC_DIR under several
gunicorn workers); ``healthcare.middleware`` counts them. The outbox, inbox,
notification and appointment figures are read from the database at scrape time
(the totals cached for HEALTH_FIGURES_CACHE_S), so every replica reports the same
numbers. The relay and the consumer serve their own loop metrics on their ports.
"""

import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.metrics_access import metrics_access
from monitoring.selectors import PipelineFigures, pipeline_figures

logger = logging.getLogger(__name__)

DELAY_QUANTILES = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"), ("1", "max"))


def _gauge(name: str, doc: str, value) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[])
    if value is not None:
        family.add_metric([], value)
    return family


def _labelled(name: str, doc: str, label: str, values: dict) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


class PipelineCollector:
    """Outbox, consumer, notification and appointment figures, read at scrape time."""

    def collect(self):
        try:
            f = pipeline_figures(cache_seconds=settings.HEALTH["FIGURES_CACHE_S"])
        except DatabaseError as exc:
            logger.warning("metrics: database unavailable: %s", exc)
            yield _gauge("healthcare_database_up", "1 when the database answered.", 0)
            return
        yield _gauge("healthcare_database_up", "1 when the database answered.", 1)
        yield from outbox_gauges(f)
        yield from consumer_gauges(f)
        yield _gauge(
            "healthcare_notifications", "Notifications stored.", f.notifications
        )
        yield _labelled(
            "healthcare_appointments",
            "Appointments by status.",
            "status",
            f.appointments_by_status,
        )


def outbox_gauges(f: PipelineFigures):
    yield _gauge(
        "healthcare_outbox_pending_events", "Outbox rows not yet published.", f.pending
    )
    yield _gauge(
        "healthcare_outbox_oldest_pending_age_seconds",
        "Age of the oldest unpublished outbox row (0 when none): relay health.",
        f.oldest_pending_age_s or 0,
    )
    yield _labelled(
        "healthcare_outbox_published_events",
        "Outbox rows published within the window.",
        "window",
        {"1m": f.published_last_minute, "1h": f.published_last_hour},
    )
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


def consumer_gauges(f: PipelineFigures):
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
    yield _labelled(
        "healthcare_pipeline_delay_seconds",
        "Outbox commit to inbox commit, for events published in the last 5 minutes.",
        "quantile",
        {label: f.delay_s[key] for label, key in DELAY_QUANTILES if key in f.delay_s},
    )


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
