"""Months of history for bench/consumer.py: old inbox rows, notifications and emails.

``fill_history`` writes N events' worth of rows server-side (INSERT ... SELECT over
generate_series, in chunks, with progress): per event one inbox row, a notification
for the patient and one for the doctor, and a sent email delivery for each, dated
over the 180 days before now, then VACUUM ANALYZE and a CHECKPOINT, as a database
that has been running for months would be. ``explain_inbox_check`` shows the plan
of the consumer's batch statement at that size.
"""

import time

from common import progress

from devtools.records import Record

FIELDS = ("key", "value", "headers")

CHUNK = 100_000

_FILL_SQL = """
    WITH times AS (
        SELECT g, now() - interval '180 days' + g * (interval '179 days' / %(n)s) AS at
        FROM generate_series(%(lo)s, %(hi)s - 1) AS g
    ), ev AS MATERIALIZED (
        -- a version 7 event id of that time (as relay.models.uuid7 makes them):
        -- 48 bits of milliseconds over a random UUID, version bits 0111
        SELECT g, at, gen_random_uuid() AS appointment,
               encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                   placing substring(int8send((extract(epoch FROM at) * 1000)::int8)
                                     FROM 3)
                   FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid AS event_id
        FROM times
    ), inbox AS (
        INSERT INTO {inbox} (event_id, event_type, topic, partition, "offset",
                             processed_at)
        SELECT event_id, 'appointment.booked', 'appointments', g %% 3, g / 3, at
        FROM ev
    ), notes AS (
        INSERT INTO {notes} (recipient_id, event_id, appointment_id, event_type,
                             message, created_at, read_at)
        SELECT r.recipient, ev.event_id, ev.appointment, 'appointment.booked',
               r.message, ev.at, ev.at + interval '1 day'
        FROM ev CROSS JOIN LATERAL (VALUES
            ((%(patients)s::int8[])[1 + g %% %(np)s],
             'Your appointment with Dr. Bench on 2030-05-06 at 09:00 is booked.'),
            ((%(doctors)s::int8[])[1 + g %% %(nd)s],
             'New appointment on 2030-05-06 at 09:00.')
        ) AS r(recipient, message)
        ORDER BY ev.g
        RETURNING id, created_at
    )
    INSERT INTO {emails} (notification_id, status, attempts, last_error,
                          next_attempt_at, sent_at, created_at)
    SELECT id, 'sent', 1, '', created_at, created_at + interval '1 minute', created_at
    FROM notes
"""


def _tables() -> dict[str, str]:
    from django.db import connection

    from notifications.models import EmailDelivery, Notification, ProcessedEvent

    q = connection.ops.quote_name
    models = {"inbox": ProcessedEvent, "notes": Notification, "emails": EmailDelivery}
    return {key: q(m._meta.db_table) for key, m in models.items()}


def fill_history(n: int, patients: list[int], doctors: list[int]) -> float:
    """Write n old events' rows; return the seconds it took."""
    from django.db import connection, transaction

    tables = _tables()
    sql = _FILL_SQL.format(**tables)
    started = time.monotonic()
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        params = {"n": n, "lo": lo, "hi": hi, "patients": patients, "doctors": doctors}
        params |= {"np": len(patients), "nd": len(doctors)}
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
        progress("filling the history (events)", hi, n, started)
    filled = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {', '.join(tables.values())}")
        cursor.execute("CHECKPOINT")
    done = time.monotonic()
    print(
        f"  history: {n:,} events' rows in {filled - started:.1f} s"
        f" ({n / (filled - started):,.0f} events/s), then VACUUM ANALYZE and"
        f" CHECKPOINT {done - filled:.1f} s"
    )
    return done - started


def explain_inbox_check(make_record, size: int = 500) -> str:
    """EXPLAIN ANALYZE of the consumer's batch statement, rolled back.

    The batch is half event ids from the history (duplicates the inbox must find)
    and half new ones (time-ordered, as the relay makes them). ``make_record(i, event_id)`` gives (key, value, headers).
    """
    import psycopg
    from django.db import connection, transaction

    from notifications.inbox import batch_statement
    from notifications.records import parse_record
    from relay.models import uuid7

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT event_id FROM {_tables()['inbox']} ORDER BY random() LIMIT %s",
            [size // 2],
        )
        ids = [row[0] for row in cursor.fetchall()]
    ids += [uuid7() for _ in range(size - len(ids))]
    events = [
        parse_record(Record(dict(zip(FIELDS, make_record(i, event_id))), offset=i))
        for i, event_id in enumerate(ids)
    ]
    sql, params = batch_statement(events)
    with transaction.atomic():
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            # arrays are spelled out in some lines: cut those
            plan = "\n".join(_cut(row[0]) for row in cursor.fetchall())
        transaction.set_rollback(True)
    return plan


def _cut(line: str, width: int = 110) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."
