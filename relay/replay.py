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
