"""The pipeline as the database sees it: backlog, throughput, failures, each event's path.

The figures come from the outbox, the inbox and the notifications tables, so they are
exact whatever the broker says. Staff see them on the admin's pipeline page (and
republish events from there); /metrics and /readyz export the same figures.
"""

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from confluent_kafka import KafkaException
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Max, Min, OuterRef, Q, Subquery, Sum
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from notifications.models import Notification, ProcessedEvent
from relay import ops
from relay.models import OutboxEvent
from audit.trail import audit_record
from relay.replay import outbox_republish

logger = logging.getLogger(__name__)

DELAY_WINDOW = timedelta(minutes=5)
DELAY_SAMPLE = 10_000
TIMELINE_SIZE = 50


@dataclass
class PipelineFigures:
    pending: int
    oldest_pending_age_s: float | None
    published_last_minute: int
    published_last_hour: int
    failing: int
    failed_attempts: int
    processed: int
    last_processed_age_s: float | None
    notifications: int
    published_not_consumed_last_hour: int
    delay_s: dict[str, float] = field(default_factory=dict)


def pipeline_figures(*, now: datetime | None = None) -> PipelineFigures:
    """Backlog, throughput and consumer progress, from the database."""
    now = now or timezone.now()
    pending = OutboxEvent.objects.pending().aggregate(
        count=Count("pk"),
        oldest=Min("created_at"),
        failing=Count("pk", filter=Q(attempts__gt=0)),
        attempts=Sum("attempts"),
    )
    published = OutboxEvent.objects.filter(
        published_at__gte=now - timedelta(hours=1)
    ).aggregate(
        hour=Count("pk"),
        minute=Count("pk", filter=Q(published_at__gte=now - timedelta(minutes=1))),
    )
    inbox = ProcessedEvent.objects.aggregate(
        count=Count("pk"), last=Max("processed_at")
    )
    unconsumed = (
        OutboxEvent.objects.filter(published_at__gte=now - timedelta(hours=1))
        .exclude(event_id__in=ProcessedEvent.objects.values("event_id"))
        .count()
    )
    return PipelineFigures(
        pending=pending["count"],
        oldest_pending_age_s=_age(now, pending["oldest"]),
        published_last_minute=published["minute"],
        published_last_hour=published["hour"],
        failing=pending["failing"],
        failed_attempts=pending["attempts"] or 0,
        processed=inbox["count"],
        last_processed_age_s=_age(now, inbox["last"]),
        notifications=Notification.objects.count(),
        published_not_consumed_last_hour=unconsumed,
        delay_s=end_to_end_delay(now=now),
    )


def end_to_end_delay(*, now: datetime) -> dict[str, float]:
    """Seconds from outbox commit to inbox commit, for events published lately.

    Answers the median, p95, p99 and max; empty when nothing went through lately.
    """
    processed_at = ProcessedEvent.objects.filter(event_id=OuterRef("event_id")).values(
        "processed_at"
    )[:1]
    pairs = (
        OutboxEvent.objects.filter(published_at__gte=now - DELAY_WINDOW)
        .annotate(processed_at=Subquery(processed_at))
        .exclude(processed_at=None)
        .order_by("-published_at")
        .values_list("created_at", "processed_at")[:DELAY_SAMPLE]
    )
    delays = sorted(
        max(0.0, (done - created).total_seconds()) for created, done in pairs
    )
    if not delays:
        return {}
    return {
        "p50": _quantile(delays, 0.5),
        "p95": _quantile(delays, 0.95),
        "p99": _quantile(delays, 0.99),
        "max": delays[-1],
    }


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


# -- per-event timeline ----------------------------------------------------------


@dataclass
class Timeline:
    event: OutboxEvent
    consumed_at: datetime | None
    notified_at: datetime | None
    notifications: int

    @property
    def stage(self) -> str:
        if self.notifications:
            return "notified"
        if self.consumed_at:
            return "consumed"
        if self.event.published_at:
            return "published"
        return "failing" if self.event.attempts else "pending"


def event_timelines(*, search: str = "", limit: int = TIMELINE_SIZE) -> list[Timeline]:
    """The newest events, or those of one event or appointment id, with their path."""
    events = OutboxEvent.objects.order_by("-seq")
    search = search.strip()
    if search:
        events = events.filter(
            Q(aggregateid=search) | Q(event_id=_uuid_or_none(search))
        )
    events = list(events[:limit])
    ids = [e.event_id for e in events]
    consumed = dict(
        ProcessedEvent.objects.filter(event_id__in=ids).values_list(
            "event_id", "processed_at"
        )
    )
    notified = {
        row["event_id"]: row
        for row in Notification.objects.filter(event_id__in=ids)
        .values("event_id")
        .annotate(first=Min("created_at"), count=Count("pk"))
    }
    return [
        Timeline(
            event=e,
            consumed_at=consumed.get(e.event_id),
            notified_at=notified.get(e.event_id, {}).get("first"),
            notifications=notified.get(e.event_id, {}).get("count", 0),
        )
        for e in events
    ]


def _uuid_or_none(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


# -- the admin page ------------------------------------------------------------------


def failing_events(limit: int = 20):
    return OutboxEvent.objects.pending().filter(attempts__gt=0).order_by("seq")[:limit]


def dead_letter_summary() -> dict:
    """The dead-letter topic, read from the broker (no table holds dead letters)."""
    topic = settings.CONSUMER["DLQ_TOPIC"]
    try:
        found = ops.dead_letters(topic=topic, limit=20, timeout=3)
    except (ops.OpsError, KafkaException) as exc:
        return {"topic": topic, "error": str(exc), "total": None, "latest": []}
    return {"topic": topic, "error": "", "total": found.total, "latest": found.latest}


@require_http_methods(["GET", "POST"])
def pipeline_view(request):
    """Staff-only page: the figures, failures, dead letters and the event timeline."""
    if request.method == "POST":
        return _republish(request)
    search = request.GET.get("q", "")
    context = {
        **admin.site.each_context(request),
        "title": "Event pipeline",
        "figures": pipeline_figures(),
        "failing": failing_events(),
        "dead_letters": dead_letter_summary(),
        "timelines": event_timelines(search=search),
        "search": search,
    }
    return TemplateResponse(request, "admin/pipeline.html", context)


def _republish(request):
    one = request.POST.get("one")
    seqs = [one] if one else request.POST.getlist("events")
    seqs = [s for s in seqs if s.isdigit()]
    if not seqs:
        messages.warning(request, "Select at least one event to republish.")
        return redirect("admin-pipeline")
    with transaction.atomic():  # the republish and its audit entry, or neither
        count = outbox_republish(events=OutboxEvent.objects.filter(seq__in=seqs))
        audit_record(
            action="republished", record_type="outbox", record_ids=seqs, actor=request.user
        )
    logger.info("pipeline: %d events republished by user %s", count, request.user.pk)
    if count:
        messages.success(
            request, f"Republished {count} event(s): the relay sends them again."
        )
    else:
        messages.warning(
            request, "Nothing republished: the selected events are not published yet."
        )
    return redirect("admin-pipeline")
