"""Retention of what the notification side stores: notifications, the inbox, emails."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from notifications.models import EmailDelivery, Notification, ProcessedEvent


def _purge(queryset, *, batch_size: int) -> int:
    """Delete the rows of ``queryset`` in short batches; how many were deleted."""
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        queryset.model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)


def notifications_purge(*, batch_size: int = 5000) -> dict[str, int]:
    """Delete email deliveries, notifications and inbox rows past their retention.

    Inbox rows are kept at least as long as the topic keeps records (checked at
    start), so a replay of anything still in the topic is recognised as a duplicate.
    """
    now = timezone.now()
    retention = settings.NOTIFICATION_RETENTION
    return {
        "email deliveries": _purge(
            EmailDelivery.objects.filter(
                created_at__lt=now - timedelta(seconds=retention["EMAIL_DELIVERIES_S"])
            ),
            batch_size=batch_size,
        ),
        "notifications": _purge(
            Notification.objects.filter(
                created_at__lt=now - timedelta(seconds=retention["NOTIFICATIONS_S"])
            ),
            batch_size=batch_size,
        ),
        "inbox rows": _purge(
            ProcessedEvent.objects.filter(
                processed_at__lt=now - timedelta(seconds=retention["INBOX_S"])
            ),
            batch_size=batch_size,
        ),
    }
