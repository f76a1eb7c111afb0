"""Build CloudEvents 1.0 records (Kafka binary content mode) and enqueue them."""

import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection

from core.inserts import insert_one
from relay.models import BUCKETS, OutboxEvent, uuid7

NOTIFY_CHANNEL = "healthcare_outbox"
SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"


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
    event_id: uuid.UUID = field(default_factory=uuid7)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


def topic_for(aggregatetype: str) -> str:
    """Route an aggregate type to its topic, with the configured prefix."""
    topics = settings.OUTBOX["TOPICS"]
    topic = topics.get(aggregatetype, aggregatetype)
    return settings.OUTBOX["TOPIC_PREFIX"] + topic


def bucket_for(key: str) -> int:
    """A stable bucket for a key: every event of one key lands in one bucket."""
    return zlib.crc32(key.encode()) % BUCKETS


def cloudevent_headers(event: Event) -> dict[str, str]:
    headers = {
        "ce_specversion": SPECVERSION,
        "ce_id": str(event.event_id),
        "ce_source": event.source,
        "ce_type": event.type,
        "ce_time": event.time.isoformat().replace("+00:00", "Z"),
        "ce_subject": event.subject or event.aggregateid,
        "content-type": CONTENT_TYPE,
    }
    if event.traceparent:
        headers["traceparent"] = event.traceparent
    return headers


def outbox_row(event: Event) -> OutboxEvent:
    """The (unsaved) outbox row for an event."""
    headers = cloudevent_headers(event)
    return OutboxEvent(
        event_id=event.event_id,
        aggregatetype=event.aggregatetype,
        aggregateid=event.aggregateid,
        type=event.type,
        topic=topic_for(event.aggregatetype),
        key=event.aggregateid,
        payload=event.data,
        headers=headers,
        ce_specversion=headers["ce_specversion"],
        ce_source=headers["ce_source"],
        ce_subject=headers["ce_subject"],
        ce_time=headers["ce_time"],
        traceparent=headers.get("traceparent"),
        bucket=bucket_for(event.aggregateid),
        created_at=event.time,
    )


def enqueue(event: Event) -> OutboxEvent:
    """Write the event to the outbox in the caller's transaction.

    Must run inside ``transaction.atomic()``: the event exists if and only if the
    change that caused it commits. The caller locks the aggregate's row first
    (``select_for_update``), so the events of one aggregate get ``seq`` values in
    commit order. On PostgreSQL the insert's trigger NOTIFYs the relays on commit.
    """
    return enqueue_many([event])[0]


def enqueue_many(events: list[Event]) -> list[OutboxEvent]:
    """Write several events to the outbox in the caller's transaction, in order."""
    if not connection.in_atomic_block:
        raise RuntimeError("enqueue() must be called inside transaction.atomic().")
    rows = [outbox_row(event) for event in events]
    if len(rows) == 1:
        insert_one(rows[0])  # the hot path: its INSERT is built once
    else:
        OutboxEvent.objects.bulk_create(rows, batch_size=1000)
    # On PostgreSQL the insert's trigger (migration relay 0004) wakes the relays.
    return rows


def notify_relay() -> None:
    """Wake the relays when the current transaction commits (PostgreSQL only).

    Inserts notify by trigger; this is for changes that make old rows pending again.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])
