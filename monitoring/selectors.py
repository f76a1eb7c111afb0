"""The pipeline as the database sees it: backlog, throughput, failures, each event's path.

The figures come from the outbox, the inbox and the notifications tables, so they are
exact whatever the broker says. Staff see them on the admin's pipeline page (and
republish events from there); /metrics and /readyz export the same figures.

Cost: the backlog and the consumer's progress are bounded queries on indexed
columns (the pending index, the inbox's processed_at index, a one-hour range of the
published index probing the inbox by key). The totals (whole-table counts, the delay
sample) are cached for HEALTH_FIGURES_CACHE_S seconds per process for /metrics.
"""

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Exists, Max, Min, OuterRef, Q, Subquery
from django.utils import timezone

from appointments.models import Appointment
from core.stats import quantile
from notifications.models import Notification, ProcessedEvent
from relay.models import OutboxEvent
from relay.selectors import outbox_backlog

DELAY_WINDOW = timedelta(minutes=5)
DELAY_SAMPLE = 10_000
TIMELINE_SIZE = 50
CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class ConsumerProgress:
    processed_last_age_s: float | None
    published_not_consumed_last_hour: int


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
    appointments_by_status: dict[str, int] = field(default_factory=dict)


def consumer_progress(*, now: datetime) -> ConsumerProgress:
    """When the consumer last recorded an event, and what it has not recorded yet."""
    last = ProcessedEvent.objects.aggregate(last=Max("processed_at"))["last"]
    since = now - timedelta(hours=1)
    # An event published since then was recorded after its publication: bounding the
    # inbox side too (with room for clock skew between the relay and the consumer)
    # keeps both sides index range scans, whatever the size of the tables.
    in_inbox = ProcessedEvent.objects.filter(
        event_id=OuterRef("event_id"), processed_at__gte=since - CLOCK_SKEW
    )
    unconsumed = (
        OutboxEvent.objects.filter(published_at__gte=since)
        .filter(~Exists(in_inbox))
        .count()
    )
    return ConsumerProgress(_age(now, last), unconsumed)


def pipeline_figures(
    *, now: datetime | None = None, cache_seconds: float = 0
) -> PipelineFigures:
    """Backlog, throughput and consumer progress, from the database.

    The totals are at most ``cache_seconds`` old (never cached inside a
    transaction: it must see its own writes).
    """
    now = now or timezone.now()
    backlog = outbox_backlog(now=now)
    progress = consumer_progress(now=now)
    totals = _cached("totals", cache_seconds, lambda: _totals(now))
    return PipelineFigures(
        pending=backlog.pending,
        oldest_pending_age_s=backlog.oldest_pending_age_s,
        failing=backlog.failing,
        failed_attempts=backlog.failed_attempts,
        last_processed_age_s=progress.processed_last_age_s,
        published_not_consumed_last_hour=progress.published_not_consumed_last_hour,
        **totals,
    )


def _totals(now: datetime) -> dict:
    published = OutboxEvent.objects.filter(
        published_at__gte=now - timedelta(hours=1)
    ).aggregate(
        hour=Count("pk"),
        minute=Count("pk", filter=Q(published_at__gte=now - timedelta(minutes=1))),
    )
    by_status = dict(
        Appointment.objects.order_by().values_list("status").annotate(n=Count("pk"))
    )
    return {
        "published_last_minute": published["minute"],
        "published_last_hour": published["hour"],
        "processed": ProcessedEvent.objects.count(),
        "notifications": Notification.objects.count(),
        "delay_s": end_to_end_delay(now=now),
        "appointments_by_status": {
            status: by_status.get(status, 0) for status in Appointment.Status.values
        },
    }


_cache: dict[tuple, tuple[float, object]] = {}
_cache_lock = threading.Lock()


def _cached(key: str, seconds: float, compute: Callable[[], object]):
    """``compute()`` at most every ``seconds`` per process and database."""
    if seconds <= 0 or connection.in_atomic_block:
        return compute()
    key = (connection.settings_dict["NAME"], key)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < seconds:
        return hit[1]
    value = compute()
    with _cache_lock:
        _cache[key] = (now, value)
    return value


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


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
        "p50": quantile(delays, 0.5),
        "p95": quantile(delays, 0.95),
        "p99": quantile(delays, 0.99),
        "max": delays[-1],
    }


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


def failing_events(limit: int = 20):
    return OutboxEvent.objects.pending().filter(attempts__gt=0).order_by("seq")[:limit]
