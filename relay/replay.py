"""Republishing: put already-published events back in the queue."""

from django.db import transaction

from relay.events import notify_relay
from relay.models import OutboxEvent


@transaction.atomic
def outbox_republish(*, events) -> int:
    """Mark the given published events pending again; the relay sends them once more.

    They keep their ids (``seq`` and event UUID), so they go out in their original
    order and consumers recognise them as duplicates of what they already applied.
    """
    count = (
        OutboxEvent.objects.filter(pk__in=events.values("pk"))
        .published()
        .update(
            published_at=None,
            partition=None,
            offset=None,
            attempts=0,
            next_attempt_at=None,
            last_error="",
        )
    )
    if count:
        notify_relay()
    return count


def outbox_replay_selection(
    *, since, until, aggregate_id: str = "", event_type: str = ""
):
    """The outbox rows created in [since, until), optionally of one aggregate or type."""
    events = OutboxEvent.objects.filter(created_at__gte=since, created_at__lt=until)
    if aggregate_id:
        events = events.filter(aggregateid=aggregate_id)
    if event_type:
        events = events.filter(type=event_type)
    return events


def outbox_replay(*, events, batch_size: int = 5000, on_batch=None) -> int:
    """Put the published rows of ``events`` back in the queue, oldest first, in batches.

    Each batch is one short transaction, so a large range never holds many row locks
    for long; the relay starts republishing the first batch while later ones are marked.
    """
    total, after = 0, 0
    while True:
        seqs = list(
            events.published()
            .filter(seq__gt=after)
            .order_by("seq")
            .values_list("seq", flat=True)[:batch_size]
        )
        if not seqs:
            return total
        total += outbox_republish(events=OutboxEvent.objects.filter(seq__in=seqs))
        after = seqs[-1]
        if on_batch is not None:
            on_batch(total)
