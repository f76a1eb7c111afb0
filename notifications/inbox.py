"""The duplicate check and the notifications' writes: one transaction per batch.

The inbox (``ProcessedEvent``) holds every event id that has had its effect. A
batch inserts its ids with ``ON CONFLICT DO NOTHING``; only the ids that were new
get notifications (and email deliveries), in the same transaction, so an event
applied twice has no second effect. PostgreSQL does it in one statement over
arrays; other databases (SQLite) in a few bulk statements.
"""

import functools
import uuid
import weakref
from dataclasses import dataclass, field

import psycopg
from django.contrib.auth import get_user_model
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from notifications.handlers import InvalidEvent
from notifications.models import EmailDelivery, Notification, ProcessedEvent
from notifications.records import ParsedEvent

# Rows per INSERT on databases without the array path (SQLite's bound-variable limit).
_CHUNK = 500
# A batch that waits this long for a lock gives up and is retried (the error policy
# treats it as transient), so a stuck lock cannot hold the consumer, or its SIGTERM.
LOCK_TIMEOUT = "5s"


@dataclass
class Applied:
    """What one call of apply_events did."""

    new: list[ParsedEvent] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[tuple[ParsedEvent, InvalidEvent]] = field(default_factory=list)


def apply_events(events: list[ParsedEvent]) -> Applied:
    """Record the events in the inbox and create their notifications, atomically.

    An event id already in the inbox (or twice in ``events``) creates nothing. An
    event for a recipient who does not exist is rejected, not written.
    """
    unique = list({e.event_id: e for e in events}.values())
    result = Applied(duplicates=len(events) - len(unique))
    if not unique:
        return result
    if connection.vendor == "postgresql":
        new_ids, refused = _apply_postgresql(unique)
        result.rejected = [
            (e, InvalidEvent(f"unknown recipient user {refused[e.event_id]}"))
            for e in unique
            if e.event_id in refused
        ]
    else:
        with transaction.atomic():
            new_ids = _apply_generic(unique, result)
    result.new = [e for e in unique if e.event_id in new_ids]
    result.duplicates += len(unique) - len(result.new) - len(result.rejected)
    return result


def _apply_generic(unique: list[ParsedEvent], result: Applied) -> set[uuid.UUID]:
    """The recipients first, then the writes, in the caller's transaction."""
    emails = _recipients(unique)
    accepted = []
    for e in unique:
        unknown = [p.recipient_id for p in e.planned if p.recipient_id not in emails]
        if unknown:
            result.rejected.append(
                (e, InvalidEvent(f"unknown recipient user {unknown[0]}"))
            )
        else:
            accepted.append(e)
    with_email = {uid for uid, has_email in emails.items() if has_email}
    return _write_generic(accepted, with_email)


# The connections whose session has the lock timeout (a new one after a reconnect).
_TIMED_OUT: "weakref.WeakSet" = weakref.WeakSet()


def _apply_postgresql(events: list[ParsedEvent]) -> tuple[set[uuid.UUID], dict]:
    """One statement, so one round trip and no BEGIN/COMMIT of its own (outside a
    transaction it is one): at a low rate a batch is one event, and five round trips
    (BEGIN, the lock timeout, the recipients, the writes, COMMIT) cost the consumer
    and PostgreSQL more than the writes. Returns the new event ids, and the refused
    ones with their first unknown recipient."""
    sql, params = batch_statement(events)
    connection.ensure_connection()
    raw = connection.connection
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        if connection.in_atomic_block:  # a caller's transaction: for it only
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        elif raw not in _TIMED_OUT:
            cursor.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            _TIMED_OUT.add(raw)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    new_ids = {event_id for event_id, unknown in rows if unknown is None}
    refused = {event_id: unknown for event_id, unknown in rows if unknown is not None}
    return new_ids, refused


def _recipients(events: list[ParsedEvent]) -> dict[int, bool]:
    """The recipients that exist, each with whether it has an email address."""
    User = get_user_model()
    ids = list({p.recipient_id for e in events for p in e.planned})
    rows = User.objects.filter(pk__in=ids).values_list(
        "pk", User.get_email_field_name()
    )
    return {uid: bool(address) for uid, address in rows}


_PG_BATCH_SQL = """
        WITH batch AS MATERIALIZED (
            SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::int4[],
                                 %b::int8[], %b::text[])
                WITH ORDINALITY AS b(event_id, event_type, topic, part, off, appointment, i)
        ), planned AS MATERIALIZED (
            SELECT * FROM unnest(%b::int8[], %b::int8[], %b::text[])
                WITH ORDINALITY AS n(event_number, recipient, message, j)
        ), people AS MATERIALIZED (
            SELECT u.{user_pk} AS id, coalesce(u.{address}, '') <> '' AS has_email
            FROM {users} u WHERE u.{user_pk} IN (SELECT recipient FROM planned)
        ), refused AS MATERIALIZED (
            SELECT n.event_number, (array_agg(n.recipient ORDER BY n.j))[1] AS unknown
            FROM planned n LEFT JOIN people p ON p.id = n.recipient
            WHERE p.id IS NULL
            GROUP BY n.event_number
        ), new_events AS (
            INSERT INTO {inbox} (event_id, event_type, topic, partition, {offset},
                                 processed_at)
            SELECT event_id, event_type, topic, part, off, %b FROM batch
            WHERE i NOT IN (SELECT event_number FROM refused)
            ON CONFLICT (event_id) DO NOTHING
            RETURNING event_id
        ), new_notes AS (
            INSERT INTO {notes} (recipient_id, event_id, appointment_id, event_type,
                                 message, created_at)
            SELECT n.recipient, b.event_id, b.appointment::uuid, b.event_type, n.message, %b
            FROM planned n
            JOIN batch b ON b.i = n.event_number
            JOIN new_events ne ON ne.event_id = b.event_id
            ORDER BY n.j
            RETURNING id, recipient_id
        ), new_emails AS (
            INSERT INTO {emails} (notification_id, status, attempts, last_error,
                                  next_attempt_at, created_at)
            SELECT id, %b, 0, '', %b, %b FROM new_notes
            WHERE recipient_id IN (SELECT id FROM people WHERE has_email)
        )
        SELECT event_id, NULL::int8 FROM new_events
        UNION ALL
        SELECT b.event_id, r.unknown FROM refused r JOIN batch b ON b.i = r.event_number
"""


def batch_statement(events: list[ParsedEvent]) -> tuple[str, list]:
    """The PostgreSQL statement that applies a batch, and its parameters.

    It checks the recipients, writes the inbox rows, then the notifications and
    email deliveries of the new events, and returns a row per new or refused event.
    Parameters go as binary arrays with server-side binding, several times cheaper
    than quoting thousands of values into the SQL. Notifications are inserted in
    batch order (WITH ORDINALITY), so their ids keep the order within a partition.
    Run on a raw psycopg cursor (``%b`` placeholders); bench/consumer.py EXPLAINs it.
    """
    return _batch_sql(), _pg_batch_params(events)


@functools.cache
def table_names() -> dict[str, str]:
    """The quoted names the notifications' raw SQL uses: its tables, and the user
    model's table, key and address column (a custom user model's too)."""
    q = connection.ops.quote_name
    User = get_user_model()
    meta = User._meta
    return {
        "inbox": q(ProcessedEvent._meta.db_table),
        "notes": q(Notification._meta.db_table),
        "emails": q(EmailDelivery._meta.db_table),
        "offset": q("offset"),
        "users": q(meta.db_table),
        "user_pk": q(meta.pk.column),
        "address": q(meta.get_field(User.get_email_field_name()).column),
    }


@functools.cache
def _batch_sql() -> str:
    return _PG_BATCH_SQL.format(**table_names())


def _pg_batch_params(events: list[ParsedEvent]) -> list:
    now = timezone.now()
    note_event, recipients, messages = [], [], []
    for number, e in enumerate(events, start=1):
        for p in e.planned:
            note_event.append(number)
            recipients.append(p.recipient_id)
            messages.append(p.message)
    return [
        [e.event_id for e in events],
        [e.event_type for e in events],
        [e.msg.topic() for e in events],
        [e.msg.partition() for e in events],
        [e.msg.offset() for e in events],
        [e.appointment_id for e in events],
        note_event,
        recipients,
        messages,
        now,
        now,
        EmailDelivery.Status.PENDING,
        now,
        now,
    ]


def _write_generic(events: list[ParsedEvent], with_email: set[int]) -> set[uuid.UUID]:
    new_ids: set[uuid.UUID] = set()
    for start in range(0, len(events), _CHUNK):
        new_ids |= _insert_inbox(events[start : start + _CHUNK])
    notifications = [
        Notification(
            recipient_id=p.recipient_id,
            event_id=e.event_id,
            appointment_id=e.appointment_id,
            event_type=e.event_type,
            message=p.message,
        )
        for e in events
        if e.event_id in new_ids
        for p in e.planned
    ]
    Notification.objects.bulk_create(notifications, batch_size=_CHUNK)
    EmailDelivery.objects.bulk_create(
        [
            EmailDelivery(notification=n)
            for n in notifications
            if n.recipient_id in with_email
        ],
        batch_size=_CHUNK,
    )
    return new_ids


def _insert_inbox(events: list[ParsedEvent]) -> set[uuid.UUID]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: the ids that were new."""
    q = connection.ops.quote_name
    event_id = ProcessedEvent._meta.get_field("event_id")
    processed_at = ProcessedEvent._meta.get_field("processed_at").get_db_prep_value(
        timezone.now(), connection
    )
    params = []
    for e in events:
        params += [
            event_id.get_db_prep_value(e.event_id, connection),
            e.event_type,
            e.msg.topic(),
            e.msg.partition(),
            e.msg.offset(),
            processed_at,
        ]
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(events))
    sql = (
        f"INSERT INTO {q(ProcessedEvent._meta.db_table)} "
        f"(event_id, event_type, topic, partition, {q('offset')}, processed_at) "
        f"VALUES {values} ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {event_id.to_python(row[0]) for row in cursor.fetchall()}


def reset_connection() -> None:
    """Drop a broken database connection; the next query opens a new one."""
    try:
        connection.close()
    except DatabaseError:
        pass
    close_old_connections()
