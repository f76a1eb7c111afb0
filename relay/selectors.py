"""Read-only figures of the outbox, for metrics and health (one query each)."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min, Q, Sum

from relay.models import OutboxEvent


@dataclass(frozen=True)
class OutboxBacklog:
    pending: int
    oldest_pending_age_s: float | None
    failing: int  # pending rows with at least one failed attempt
    failed_attempts: int


def outbox_backlog(*, now: datetime) -> OutboxBacklog:
    """The unpublished rows: a scan of the pending index, as long as the backlog."""
    row = OutboxEvent.objects.pending().aggregate(
        count=Count("pk"),
        oldest=Min("created_at"),
        failing=Count("pk", filter=Q(attempts__gt=0)),
        attempts=Sum("attempts"),
    )
    oldest = row["oldest"]
    return OutboxBacklog(
        pending=row["count"],
        oldest_pending_age_s=None
        if oldest is None
        else max(0.0, (now - oldest).total_seconds()),
        failing=row["failing"],
        failed_attempts=row["attempts"] or 0,
    )
