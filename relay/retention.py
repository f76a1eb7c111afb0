"""Retention: published outbox rows are deleted once they are older than OUTBOX_RETENTION."""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Subquery
from django.utils import timezone

from relay.models import OutboxEvent

logger = logging.getLogger("relay")


def outbox_purgeable(*, older_than: float | None = None):
    """Published rows past the retention period (``older_than`` seconds, default setting)."""
    seconds = settings.OUTBOX["RETENTION_S"] if older_than is None else older_than
    cutoff = timezone.now() - timedelta(seconds=seconds)
    if settings.OUTBOX_RELAY == "cdc":
        # Debezium read the rows from the WAL; nothing marks them: age alone decides.
        return OutboxEvent.objects.filter(created_at__lt=cutoff)
    # created_at bounds the scan by its index; a row is published after it is created.
    return OutboxEvent.objects.filter(created_at__lt=cutoff, published_at__lt=cutoff)


def outbox_purge_batch(
    *, older_than: float | None = None, batch_size: int | None = None
) -> int:
    """Delete one bounded batch of purgeable rows, oldest first; returns how many.

    One statement: ``DELETE ... WHERE seq IN (the oldest purgeable seqs, LIMIT n)``.
    The outer filter repeats the purgeable conditions, so a row that a replay made
    pending meanwhile is rechecked on its new version and kept.
    """
    size = batch_size or settings.OUTBOX["PURGE_BATCH_SIZE"]
    purgeable = outbox_purgeable(older_than=older_than)
    oldest = purgeable.order_by("created_at").values("seq")[:size]
    deleted, _ = purgeable.filter(seq__in=Subquery(oldest)).delete()
    return deleted


def outbox_purge(
    *, older_than: float | None = None, batch_size: int | None = None, on_batch=None
) -> int:
    """Delete every purgeable row in bounded batches (one transaction each)."""
    size = batch_size or settings.OUTBOX["PURGE_BATCH_SIZE"]
    total = 0
    while True:
        deleted = outbox_purge_batch(older_than=older_than, batch_size=size)
        total += deleted
        if on_batch is not None and deleted:
            on_batch(total)
        if deleted < size:
            return total


class PurgeSchedule:
    """In the relay: one bounded purge batch per turn while rows expire, else a pause."""

    def __init__(self):
        self._next = 0.0

    def run_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        deleted = outbox_purge_batch()
        if deleted:
            logger.info("relay: purged %d published events past retention", deleted)
        full = deleted >= settings.OUTBOX["PURGE_BATCH_SIZE"]
        self._next = now if full else now + settings.OUTBOX["PURGE_INTERVAL_S"]
