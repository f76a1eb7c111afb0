"""The relay's queries against the outbox: claim, mark, record failures, leases.

The hot path (claim and mark) is plain SQL returning named tuples: no model instances,
the payload and headers come back as the JSON text the database already holds. On
PostgreSQL each store owns one connection (one per relay thread), in autocommit mode,
so each claim and each mark is one short transaction.
"""

import uuid
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.db import connection as django_connection
from django.utils import timezone

from core.db import DATABASE_ERRORS  # noqa: F401  (the relay imports it from here)
from core.loops import backoff_delay
from relay.models import OutboxEvent, ShardLease

OUTBOX = OutboxEvent._meta.db_table
LEASE = ShardLease._meta.db_table


# An event's retries wait 0.5 s, 1 s, 2 s, ... up to OUTBOX_MAX_BACKOFF_S.
EVENT_BACKOFF_BASE = 0.5


class ClaimedRow(NamedTuple):
    """A pending outbox row as the relay claims it."""

    seq: int
    bucket: int
    topic: str
    key: str
    payload: str  # JSON text
    headers: str  # JSON text
    attempts: int  # failed attempts so far
    retry_in: float | None  # seconds until its backoff ends, None when it is due
    event_id: str = ""


def event_backoff(attempts: int, max_backoff: float) -> float:
    """How long an event waits after its n-th failed attempt."""
    return backoff_delay(attempts, base=EVENT_BACKOFF_BASE, cap=max_backoff)


def shard_filter(shards: list[int] | None, shard_count: int) -> bool:
    """Whether a claim must filter by shard (not when it leads them all)."""
    return shards is not None and len(shards) < shard_count


def by_seq(seqs: list[int], values):
    """``{"seq": value}`` as one jsonb parameter: per-row values for an UPDATE that
    finds its rows by ``seq = ANY(...)``, each read back in O(log n) by key."""
    from psycopg.types.json import Jsonb

    return Jsonb(dict(zip(map(str, seqs), values, strict=True)))


def acks_by_seq(seqs: list[int], partitions: list[int], offsets: list[int]):
    """``{"seq": [partition, offset]}`` as jsonb, written directly: a mark of 5,000
    rows spends 2 ms here against 5.6 ms through json.dumps (the relay's hot path)."""
    from psycopg.types.json import Jsonb

    acks = zip(seqs, partitions, offsets, strict=True)
    pairs = ",".join([f'"{seq:d}":[{part:d},{off:d}]' for seq, part, off in acks])
    return Jsonb("{" + pairs + "}", dumps=str)


def pg_connect(application_name: str, **settings):
    """A new autocommit psycopg connection to Django's database, with session settings."""
    import psycopg

    params = django_connection.get_connection_params()
    for name in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(name, None)
    conn = psycopg.connect(**params, autocommit=True, application_name=application_name)
    for name, value in settings.items():
        conn.execute(f"SET {name} = '{value}'")
    return conn


class PostgresStore:
    """Claim and mark with one statement each, on a connection of its own."""

    vendor = "postgresql"

    def __init__(self, application_name: str = "outbox-relay"):
        self.application_name = application_name
        self._conn = None

    @property
    def conn(self):
        if self._conn is None or self._conn.closed:
            self._conn = pg_connect(
                self.application_name,
                # Marks may be lost if PostgreSQL crashes right after a commit: the rows
                # are then published again, which consumers already tolerate.
                synchronous_commit="off",
                # Claims must walk the pending index in seq order and marks must look
                # rows up by primary key, even when the statistics are stale (a burst
                # of inserts, or an outbox analyzed while empty): never sort the
                # whole backlog or scan the whole table. The marks join nothing (see
                # mark_published); hash and merge joins stay off so that no statement
                # reads the whole primary key to hash it (seen with a joined mark at
                # 50,000 published rows: 71,500 rows read to mark 5,000).
                enable_seqscan="off",
                enable_bitmapscan="off",
                enable_sort="off",
                enable_hashjoin="off",
                enable_mergejoin="off",
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def claim(
        self, *, after: int, limit: int, shards: list[int] | None, shard_count: int
    ) -> list[ClaimedRow]:
        """Pending rows after ``after`` in id order.

        No row locks, deliberately: the shard's leader is its only claimer (advisory
        lock, and every mark checks the lease epoch). ``FOR UPDATE SKIP LOCKED``
        passed over a row another session held locked and sent its key's next
        event first (found by the chaos suite; tests/test_relay_locked_rows.py).
        """
        where = "published_at IS NULL AND seq > %(after)s"
        if shard_filter(shards, shard_count):
            where += " AND bucket %% %(count)s = ANY(%(shards)s)"
        sql = f"""
            SELECT seq, bucket, topic, key, payload::text, headers::text, attempts,
                   CASE WHEN next_attempt_at > now()
                        THEN extract(epoch FROM next_attempt_at - now())::float8 END,
                   id::text
            FROM {OUTBOX}
            WHERE {where}
            ORDER BY seq
            LIMIT %(limit)s
        """
        params = dict(after=after, limit=limit, shards=shards, count=shard_count)
        return list(map(ClaimedRow._make, self.conn.execute(sql, params).fetchall()))

    def pending_before(
        self, *, before: int, limit: int, shards: list[int] | None, shard_count: int
    ):
        """(seq, key) of due pending rows up to ``before``: what a forward claim passed by."""
        where = "published_at IS NULL AND seq <= %(before)s"
        if shard_filter(shards, shard_count):
            where += " AND bucket %% %(count)s = ANY(%(shards)s)"
        sql = f"""
            SELECT seq, key FROM {OUTBOX}
            WHERE {where} AND (next_attempt_at IS NULL OR next_attempt_at <= now())
            ORDER BY seq LIMIT %(limit)s
        """
        params = dict(before=before, limit=limit, shards=shards, count=shard_count)
        return self.conn.execute(sql, params).fetchall()

    def mark_published(
        self,
        *,
        seqs: list[int],
        partitions: list[int],
        offsets: list[int],
        shard: int,
        epoch: int,
        published_at: datetime,
    ) -> int:
        """Mark acknowledged rows; returns 0 if the shard's lease moved on (fenced).

        The rows are found by ``seq = ANY(seqs)``, one primary-key descent each, and
        their partition and offset are read from one jsonb object keyed by seq. No
        join: joined with ``unnest(seqs, ...)``, an outbox analyzed while empty (its
        pages kept, no live rows: estimated at 1 row however much it grew since) was
        planned as a full primary-key scan outer to the array, rows x batch size, and
        one mark of 5,000 rows ran for minutes (tests/test_relay_mark_plan.py).
        """
        sql = f"""
            WITH fence AS (
                SELECT shard FROM {LEASE} WHERE shard = %(shard)s AND epoch = %(epoch)s
                FOR SHARE
            )
            UPDATE {OUTBOX} AS o
            SET published_at = %(at)s,
                partition = (%(acks)s -> o.seq::text ->> 0)::int,
                "offset" = (%(acks)s -> o.seq::text ->> 1)::bigint,
                last_error = '', next_attempt_at = NULL
            WHERE o.seq = ANY(%(seqs)s::bigint[]) AND EXISTS (SELECT 1 FROM fence)
        """
        params = {
            "shard": shard,
            "epoch": epoch,
            "at": published_at,
            "seqs": seqs,
            "acks": acks_by_seq(seqs, partitions, offsets),
        }
        return self.conn.execute(sql, params).rowcount

    def record_failures(
        self,
        *,
        failures: list[tuple[int, str]],
        shard: int,
        epoch: int,
        max_backoff: float,
    ) -> list[tuple[int, int, float]]:
        """Count a failed attempt per row and schedule its retry; returns (seq, attempts, delay)."""
        # The delay is event_backoff() written in SQL (o.attempts is the count before
        # this failure): keep the two the same formula. The rows are found by seq, as
        # mark_published finds them, whatever the statistics say.
        sql = f"""
            WITH fence AS (
                SELECT shard FROM {LEASE} WHERE shard = %(shard)s AND epoch = %(epoch)s
                FOR SHARE
            ), failed AS (
                UPDATE {OUTBOX} AS o
                SET attempts = o.attempts + 1, last_error = %(errors)s ->> o.seq::text,
                    next_attempt_at = now() + make_interval(
                        secs => least(%(max)s, %(base)s * power(2, least(o.attempts, 63))))
                WHERE o.seq = ANY(%(seqs)s::bigint[])
                  -- still pending (nothing stores 'infinity'), in a form no index
                  -- on published_at can serve: "published_at IS NULL" let an outbox
                  -- analyzed empty be planned as a read of every pending row
                  AND coalesce(o.published_at, 'infinity') = 'infinity'
                  AND EXISTS (SELECT 1 FROM fence)
                RETURNING o.seq, o.attempts
            )
            SELECT seq, attempts FROM failed
        """
        seqs = [seq for seq, _ in failures]
        params = {
            "shard": shard,
            "epoch": epoch,
            "max": float(max_backoff),
            "base": EVENT_BACKOFF_BASE,
            "seqs": seqs,
            "errors": by_seq(seqs, [error[:2000] for _, error in failures]),
        }
        rows = self.conn.execute(sql, params).fetchall()
        return [(seq, n, event_backoff(n, max_backoff)) for seq, n in rows]

    def bump_lease(self, *, shard: int, holder: str) -> int:
        """Take over a shard's lease: a new epoch fences every mark of the former leader."""
        sql = f"""
            INSERT INTO {LEASE} (shard, epoch, holder, acquired_at)
            VALUES (%(shard)s, 1, %(holder)s, now())
            ON CONFLICT (shard) DO UPDATE
            SET epoch = {LEASE}.epoch + 1, holder = EXCLUDED.holder, acquired_at = now()
            RETURNING epoch
        """
        return self.conn.execute(
            sql, {"shard": shard, "holder": holder[:200]}
        ).fetchone()[0]


class SqliteStore:
    """The same queries for SQLite, where one relay runs at a time (no row locks)."""

    vendor = "sqlite"

    def __init__(self, application_name: str = "outbox-relay"):
        self.application_name = application_name

    def close(self) -> None:
        django_connection.close()

    def _fetch(self, sql: str, params) -> list:
        with django_connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def claim(
        self, *, after: int, limit: int, shards: list[int] | None, shard_count: int
    ) -> list[ClaimedRow]:
        where, params = "published_at IS NULL AND seq > %s", [after]
        if shard_filter(shards, shard_count):
            where += f" AND (bucket %% %s) IN ({', '.join(['%s'] * len(shards))})"
            params += [shard_count, *shards]
        now = timezone.now()
        rows = self._fetch(
            "SELECT seq, bucket, topic, key, payload, headers, attempts, "
            f"next_attempt_at, id FROM {OUTBOX} WHERE {where} ORDER BY seq LIMIT %s",
            [*params, limit],
        )
        return [
            ClaimedRow(*row[:7], self._wait(row[7], now), str(uuid.UUID(row[8])))
            for row in rows
        ]

    def pending_before(
        self, *, before: int, limit: int, shards: list[int] | None, shard_count: int
    ):
        where, params = "published_at IS NULL AND seq <= %s", [before]
        if shard_filter(shards, shard_count):
            where += f" AND (bucket %% %s) IN ({', '.join(['%s'] * len(shards))})"
            params += [shard_count, *shards]
        now = django_connection.ops.adapt_datetimefield_value(timezone.now())
        return self._fetch(
            f"SELECT seq, key FROM {OUTBOX} WHERE {where} "
            "AND (next_attempt_at IS NULL OR next_attempt_at <= %s) ORDER BY seq LIMIT %s",
            [*params, now, limit],
        )

    def mark_published(
        self, *, seqs, partitions, offsets, shard, epoch, published_at
    ) -> int:
        from django.db import transaction

        at = django_connection.ops.adapt_datetimefield_value(published_at)
        with transaction.atomic(), django_connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {LEASE} WHERE shard = %s AND epoch = %s", [shard, epoch]
            )
            if cursor.fetchone() is None:
                return 0
            cursor.executemany(
                f'UPDATE {OUTBOX} SET published_at = %s, partition = %s, "offset" = %s, '
                "last_error = '', next_attempt_at = NULL WHERE seq = %s",
                [(at, p, o, s) for s, p, o in zip(seqs, partitions, offsets)],
            )
        return len(seqs)

    def record_failures(self, *, failures, shard, epoch, max_backoff):
        from django.db import transaction

        done = []
        with transaction.atomic():
            if not ShardLease.objects.filter(shard=shard, epoch=epoch).exists():
                return []
            for seq, error in failures:
                row = OutboxEvent.objects.pending().filter(seq=seq).first()
                if row is None:
                    continue
                row.attempts += 1
                delay = event_backoff(row.attempts, max_backoff)
                row.last_error = error[:2000]
                row.next_attempt_at = timezone.now() + timedelta(seconds=delay)
                row.save(update_fields=["attempts", "last_error", "next_attempt_at"])
                done.append((seq, row.attempts, delay))
        return done

    def bump_lease(self, *, shard: int, holder: str) -> int:
        from django.db import transaction

        with transaction.atomic():
            lease, _ = ShardLease.objects.select_for_update().get_or_create(shard=shard)
            lease.epoch += 1
            lease.holder = holder[:200]
            lease.acquired_at = timezone.now()
            lease.save()
        return lease.epoch

    @staticmethod
    def _wait(next_attempt_at, now) -> float | None:
        if next_attempt_at is None:
            return None
        if isinstance(next_attempt_at, str):
            next_attempt_at = datetime.fromisoformat(next_attempt_at)
        if timezone.is_naive(next_attempt_at):
            next_attempt_at = next_attempt_at.replace(tzinfo=UTC)
        remaining = (next_attempt_at - now).total_seconds()
        return remaining if remaining > 0 else None


def store_for_database(application_name: str = "outbox-relay"):
    """The store for the configured database."""
    if django_connection.vendor == "postgresql":
        return PostgresStore(application_name)
    return SqliteStore(application_name)
