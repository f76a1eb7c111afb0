"""The transactional outbox: one row per event, written in the business transaction."""

import uuid

from django.db import models
from django.utils import timezone


class OutboxEventQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(published_at__isnull=True)

    def published(self):
        return self.filter(published_at__isnull=False)

    def due(self, now=None):
        """Pending rows whose backoff, if any, has run out."""
        now = now or timezone.now()
        return self.pending().filter(
            models.Q(next_attempt_at__isnull=True) | models.Q(next_attempt_at__lte=now)
        )


class OutboxEvent(models.Model):
    """An event waiting for, or done with, publication to Kafka.

    The columns ``id`` (the event UUID), ``aggregatetype``, ``aggregateid``, ``type``
    and ``payload`` follow Debezium's outbox layout, so Debezium's outbox event router
    can read this table instead of the polling relay. ``seq`` gives the commit order.
    """

    seq = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(db_column="id", default=uuid.uuid4, unique=True)
    aggregatetype = models.CharField(max_length=64)
    aggregateid = models.CharField(max_length=64)
    type = models.CharField(max_length=128)
    topic = models.CharField(max_length=249)
    key = models.CharField(max_length=255)
    payload = models.JSONField()
    headers = models.JSONField(default=dict)
    shard = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    published_at = models.DateTimeField(null=True, blank=True)
    partition = models.IntegerField(null=True, blank=True)
    offset = models.BigIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    objects = OutboxEventQuerySet.as_manager()

    class Meta:
        ordering = ["seq"]
        indexes = [
            models.Index(
                fields=["shard", "seq"],
                name="outbox_pending_idx",
                condition=models.Q(published_at__isnull=True),
            ),
            models.Index(fields=["published_at"], name="outbox_published_idx"),
        ]

    def __str__(self):
        return f"{self.type} {self.aggregatetype}:{self.aggregateid} ({self.event_id})"

    @property
    def is_published(self) -> bool:
        return self.published_at is not None
