"""The transactional outbox: one row per event, written in the business transaction."""

import os
import time
import uuid

from django.db import models
from django.utils import timezone

# Keys hash into this many buckets at enqueue; a relay running N shards leads the
# buckets with ``bucket % N == shard``, so the shard count is a relay setting that
# can change without rewriting rows.
BUCKETS = 1024


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7).

    Event ids ordered by time keep the unique index on the outbox (and the consumer's
    inbox) appending at the right edge instead of touching a random page per row.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | rand
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return uuid.UUID(int=value)


class OutboxEventQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(published_at__isnull=True)

    def published(self):
        return self.filter(published_at__isnull=False)


class OutboxEvent(models.Model):
    """An event waiting for, or done with, publication to Kafka.

    The columns ``id`` (the event UUID), ``aggregatetype``, ``aggregateid``, ``type``
    and ``payload`` follow Debezium's outbox layout, so Debezium's outbox event router
    can read this table instead of the polling relay. ``seq`` gives the commit order
    per key (the services lock the aggregate row before they enqueue).
    """

    seq = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(db_column="id", default=uuid7, unique=True)
    aggregatetype = models.CharField(max_length=64)
    aggregateid = models.CharField(max_length=64)
    type = models.CharField(max_length=128)
    topic = models.CharField(max_length=249)
    key = models.CharField(max_length=255)
    payload = models.JSONField()
    headers = models.JSONField(default=dict)
    bucket = models.PositiveSmallIntegerField(default=0)
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
                fields=["seq"],
                name="outbox_pending_idx",
                condition=models.Q(published_at__isnull=True),
            ),
            models.Index(fields=["published_at"], name="outbox_published_idx"),
        ]

    def __str__(self):
        return f"{self.type} {self.aggregatetype}:{self.aggregateid} ({self.event_id})"


class ShardLease(models.Model):
    """Who leads a shard of the outbox, and the fencing token of that leadership.

    A new leader increments ``epoch``; every mark the relay writes checks the epoch it
    was given in the same statement, so a stalled former leader cannot mark rows.
    """

    shard = models.PositiveSmallIntegerField(primary_key=True)
    epoch = models.BigIntegerField(default=0)
    holder = models.CharField(max_length=200, blank=True)
    acquired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["shard"]

    def __str__(self):
        return f"shard {self.shard}: {self.holder or 'nobody'} (epoch {self.epoch})"
