"""bench/relay.py's history: months of published rows, the relay's query plans, a purge.

Not a bench script of its own (``make bench`` runs only files with a main).
"""

import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from common import ROOT, progress

from devtools.process import Process

HISTORY_DAYS = 28  # published_at spread over four weeks, oldest first
FILL_CHUNK = 100_000

# One statement per chunk, all in the server: rows shaped like bench/relay.py's
# event_data() and relay.events.outbox_row() (same columns, same ~300-byte payload,
# CloudEvents headers), 4 events per key, keys over all 1024 buckets, time-ordered
# event ids (uuid7 layout), created and published over HISTORY_DAYS.
FILL_SQL = """
WITH s AS MATERIALIZED (
    SELECT i,
           md5('history-key-' || (i %% %(keys)s))::uuid::text AS k,
           %(start)s::timestamptz
               + (i - 1) * %(step_us)s * interval '1 microsecond' AS t,
           md5('history-event-' || i) AS h
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
), e AS MATERIALIZED (
    SELECT s.*,
           (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0')
            || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid AS id,
           CASE i %% 10 WHEN 0 THEN 'appointment.cancelled'
                        WHEN 1 THEN 'appointment.rescheduled'
                        ELSE 'appointment.booked' END AS type,
           to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ce_time
    FROM s
)
INSERT INTO relay_outboxevent (
    id, aggregatetype, aggregateid, type, topic, key, payload, headers,
    ce_specversion, ce_source, ce_subject, ce_time, traceparent, bucket,
    created_at, published_at, partition, "offset", attempts, last_error,
    next_attempt_at)
SELECT id, 'appointment', k, type, %(topic)s, k,
       jsonb_build_object(
           'appointmentId', k, 'patientId', 100000 + i %% 5000,
           'doctorId', 1 + i %% 40, 'doctorUserId', 9000 + i %% 40,
           'doctorName', 'Dr. Margaret Hamilton-Smith',
           'date', '2027-03-' || lpad((1 + i %% 28)::text, 2, '0'),
           'timeSlot', lpad((8 + i %% 9)::text, 2, '0') || ':'
                       || CASE WHEN i %% 2 = 0 THEN '00' ELSE '30' END,
           'reason', 'Follow-up consultation about the results of the blood test, n='
                     || i,
           'status', 'booked'),
       jsonb_build_object(
           'ce_specversion', '1.0', 'ce_id', id::text,
           'ce_source', '/healthcare/appointments', 'ce_type', type,
           'ce_time', ce_time, 'ce_subject', k, 'content-type', 'application/json'),
       '1.0', '/healthcare/appointments', k, ce_time, NULL,
       hashtext(k) & 1023,
       t, t + (2 + i %% 20) * interval '1 millisecond', i %% 3, i / 3, 0, '', NULL
FROM e
"""


def fill_history(n: int, topic: str) -> int:
    """Insert n published rows, oldest first, and VACUUM ANALYZE; the last seq."""
    from django.db import connection
    from django.utils import timezone

    from relay.models import OutboxEvent

    span_us = HISTORY_DAYS * 86_400 * 1e6
    start = timezone.now() - timedelta(days=HISTORY_DAYS, minutes=5)
    params = {"keys": max(1, n // 4), "start": start, "step_us": span_us / n}
    started = time.monotonic()
    with connection.cursor() as cursor:
        for lo in range(1, n + 1, FILL_CHUNK):
            hi = min(n, lo + FILL_CHUNK - 1)
            cursor.execute(FILL_SQL, {**params, "lo": lo, "hi": hi, "topic": topic})
            progress("history fill", hi, n, started)
        sys.stderr.write("  history: VACUUM ANALYZE ...")
        sys.stderr.flush()
        cursor.execute("VACUUM ANALYZE relay_outboxevent")
    sys.stderr.write(f" done ({time.monotonic() - started:.0f} s in all)\n")
    return OutboxEvent.objects.order_by("-seq").values_list("seq", flat=True).first()


# -- the relay's statements, explained --------------------------------------------
class _NoRows:
    """What a store's statement returns while it is being explained."""

    rowcount = 0

    def fetchall(self):
        return []


class ExplainingConnection:
    """Stands in for a store's connection: EXPLAIN (ANALYZE, BUFFERS) each statement.

    The statement runs (ANALYZE) in a transaction that is rolled back, on the
    store's own connection and session settings, so the plan is the relay's.
    """

    closed = False

    def __init__(self, conn):
        self.conn = conn
        self.plans: list[str] = []

    def execute(self, sql: str, params=None):
        with self.conn.transaction(force_rollback=True):
            cursor = self.conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            self.plans.append("\n".join(row[0] for row in cursor.fetchall()))
        return _NoRows()


def explain_relay_statements(batch_size: int) -> list[tuple[str, str]]:
    """(name, plan) of PostgresStore's claim, look-back and mark, over pending rows."""
    from datetime import UTC, datetime

    from relay.store import PostgresStore

    store = PostgresStore("bench-explain")
    scope = {"shards": None, "shard_count": 1}
    rows = store.claim(after=0, limit=batch_size, **scope)
    epoch = store.bump_lease(shard=0, holder="bench-explain")
    seqs = [row.seq for row in rows]
    explaining = ExplainingConnection(store.conn)
    store._conn = explaining
    try:
        store.claim(after=0, limit=batch_size, **scope)
        store.pending_before(before=seqs[-1], limit=batch_size, **scope)
        store.mark_published(
            seqs=seqs,
            partitions=[0] * len(seqs),
            offsets=list(range(len(seqs))),
            shard=0,
            epoch=epoch,
            published_at=datetime.now(UTC),
        )
    finally:
        store._conn = explaining.conn
        store.close()
    names = ["claim", "claim look-back (pending_before)", "mark_published"]
    return list(zip(names, explaining.plans))


SCAN = re.compile(
    r"((?:Index Only Scan|Index Scan|Seq Scan)[^(]*?)\s*\(cost=.*?"
    r"actual time=[\d.]+\.\.[\d.]+ rows=(\d+) loops=(\d+)\)"
)


def plan_summary(plan: str) -> str:
    """Each scan of a plan (rows read x loops) and the execution time, on one line."""
    scans = [
        f"{' '.join(name.split())} ({int(rows):,} rows x {int(loops):,})"
        for name, rows, loops in SCAN.findall(plan)
    ]
    ms = re.search(r"Execution Time: ([\d.]+) ms", plan)
    took = f"{float(ms.group(1)):.1f} ms" if ms else "?"
    seq = " SEQ SCAN" if any(s.startswith("Seq Scan") for s in scans) else ""
    return f"{'; '.join(scans) or 'no scan'}; {took}{seq}"


# -- outbox_purge as a real process ------------------------------------------------
class PurgeRun:
    """``manage.py outbox_purge --older-than ...`` in a child process, timed."""

    def __init__(self, env: dict, older_than: str, log_path: Path):
        argv = [sys.executable, "manage.py", "outbox_purge", "--older-than", older_than]
        log_path.unlink(missing_ok=True)
        self.process = Process(
            "outbox_purge", argv, log_path=log_path, env=env, cwd=ROOT
        )
        self.started = self.finished = 0.0

    def start(self) -> "PurgeRun":
        self.started = time.monotonic()
        self.process.start()
        return self

    def running(self) -> bool:
        """Whether it still runs (notes the time it is first seen finished)."""
        if self.process.proc.poll() is None:
            return True
        self.finished = self.finished or time.monotonic()
        return False

    def wait(self, timeout: float = 600) -> tuple[int, float]:
        """(rows deleted, seconds from start to exit); raises if it failed."""
        try:
            code = self.process.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.stop(grace=5)
            raise RuntimeError("outbox_purge did not finish") from None
        self.running()
        found = re.search(r"purged (\d+) published events", self.process.output())
        if code != 0 or not found:
            raise RuntimeError(
                f"outbox_purge failed ({code}):\n{self.process.output()}"
            )
        return int(found.group(1)), self.finished - self.started

    def stop(self) -> None:
        self.process.stop(grace=5)
