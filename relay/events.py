"""Build CloudEvents 1.0 records (Kafka binary content mode) and enqueue them."""

import json
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection

from relay.models import OutboxEvent

NOTIFY_CHANNEL = "healthcare_outbox"


@dataclass(frozen=True)
class Event:
    """One domain event: what enqueue() turns into an outbox row."""

    type: str
    aggregatetype: str
    aggregateid: str
    data: dict
    source: str
    subject: str = ""
    traceparent: str = ""
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


def topic_for(aggregatetype: str) -> str:
    """Route an aggregate type to its topic, with the configured prefix."""
    topics = settings.OUTBOX["TOPICS"]
    topic = topics.get(aggregatetype, aggregatetype)
    return settings.OUTBOX["TOPIC_PREFIX"] + topic


def shard_for(key: str, shards: int | None = None) -> int:
    """A stable shard for a key: every event of one key stays in one shard."""
    count = shards or settings.OUTBOX.get("SHARDS", 1)
    return zlib.crc32(key.encode()) % count if count > 1 else 0


def cloudevent_headers(event: Event) -> dict[str, str]:
    headers = {
        "ce_specversion": "1.0",
        "ce_id": str(event.event_id),
        "ce_source": event.source,
        "ce_type": event.type,
        "ce_time": event.time.isoformat().replace("+00:00", "Z"),
        "ce_subject": event.subject or event.aggregateid,
        "content-type": "application/json",
    }
    if event.traceparent:
        headers["traceparent"] = event.traceparent
    return headers


def enqueue(event: Event) -> OutboxEvent:
    """Write the event to the outbox in the caller's transaction.

    Must run inside ``transaction.atomic()``: the event exists if and only if the
    change that caused it commits. On PostgreSQL a NOTIFY (delivered on commit)
    wakes the relay at once.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("enqueue() must be called inside transaction.atomic().")
    key = event.aggregateid
    row = OutboxEvent.objects.create(
        event_id=event.event_id,
        aggregatetype=event.aggregatetype,
        aggregateid=event.aggregateid,
        type=event.type,
        topic=topic_for(event.aggregatetype),
        key=key,
        payload=event.data,
        headers=cloudevent_headers(event),
        shard=shard_for(key),
        created_at=event.time,
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, str(row.shard)])
    return row


def encode_payload(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

