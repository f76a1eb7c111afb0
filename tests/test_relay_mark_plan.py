"""The relay's marks look their rows up by primary key, whatever the statistics say.

Found by bench/relay.py: after the outbox was emptied and analyzed (no live rows, its
pages kept), the next burst was estimated at one row, and the mark, then a join with
``unnest(seqs, ...)``, was planned as a full primary-key scan outer to the array. A
mark of 5,000 rows ran for minutes and the relay stalled.
"""

import json
import re
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from psycopg import sql as sql_

from relay.models import OutboxEvent
from relay.store import OUTBOX, PostgresStore

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

BURST = 20_000
MARKED = 2_000


def insert_pending(conn, count: int) -> None:
    conn.execute(
        f"""
        INSERT INTO {OUTBOX} (id, aggregatetype, aggregateid, type, topic, key,
                              payload, headers, bucket, created_at, attempts, last_error)
        SELECT gen_random_uuid(), 'appointment', g::text, 'appointment.booked',
               'appointments', g::text, '{{}}', '{{}}', g %% 1024, now(), 0, ''
        FROM generate_series(1, %s) AS g
        """,
        [count],
    )


# The type of each named parameter of the store's statements, for PREPARE.
PARAM_TYPES = {
    "shard": "smallint",
    "epoch": "bigint",
    "at": "timestamptz",
    "seqs": "bigint[]",
    "acks": "jsonb",
    "errors": "jsonb",
    "max": "float8",
    "base": "float8",
}


class ExplainFirst:
    """Stands in for the store's connection: EXPLAIN each statement, then run it.

    Each statement is explained twice: planned for its values (as its first runs
    are), and as the generic plan that a statement psycopg has prepared (after 5
    runs) may settle on. EXPLAIN with values always plans for them, whatever
    plan_cache_mode says, so the generic plan is shown through PREPARE and
    EXPLAIN EXECUTE.
    """

    closed = False

    def __init__(self, conn):
        self.conn = conn
        self.plans: list[dict] = []

    def execute(self, sql, params=None):
        explained = self.conn.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        self.plans.append(explained.fetchone()[0][0]["Plan"])
        self.plans.append(self.generic_plan(sql, params))
        return self.conn.execute(sql, params)

    def generic_plan(self, sql: str, params: dict) -> dict:
        names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
        numbered = re.sub(
            r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", sql
        ).replace("%%", "%")
        types = ", ".join(PARAM_TYPES[name] for name in names)
        # EXPLAIN EXECUTE takes no bound parameters: the values go in as literals
        values = sql_.SQL(", ").join(sql_.Literal(params[name]) for name in names)
        with self.conn.transaction(force_rollback=True):
            self.conn.execute(f"PREPARE generic_probe ({types}) AS {numbered}")
            self.conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            explain = sql_.SQL("EXPLAIN (FORMAT JSON) EXECUTE generic_probe ({})")
            explained = self.conn.execute(explain.format(values))
            plan = explained.fetchone()[0][0]["Plan"]
            self.conn.execute("DEALLOCATE generic_probe")
        return plan


@contextmanager
def explained(store: PostgresStore):
    """The store's statements explained (``.plans``) as they run."""
    explaining = ExplainFirst(store.conn)
    store._conn = explaining
    try:
        yield explaining
    finally:
        store._conn = explaining.conn


def outbox_scans(plan: dict):
    if plan.get("Relation Name") == OUTBOX and plan["Node Type"].endswith("Scan"):
        yield plan
    for child in plan.get("Plans", []):
        yield from outbox_scans(child)


def assert_lookups_by_key(plan: dict) -> None:
    scans = list(outbox_scans(plan))
    assert scans, json.dumps(plan, indent=1)
    for scan in scans:
        # an outbox scan without an index condition reads the whole table
        assert "Index Cond" in scan, json.dumps(plan, indent=1)
        assert "seq = ANY" in scan["Index Cond"], json.dumps(plan, indent=1)


def assert_lookups_by_key_in_both(plans: list[dict]) -> None:
    custom, generic = plans
    assert_lookups_by_key(custom)
    assert_lookups_by_key(generic)
    # planned for the values, and for a parameter: seq = ANY ('{...}'), seq = ANY ($n)
    assert all("ANY ('{" in scan["Index Cond"] for scan in outbox_scans(custom))
    assert all("ANY ($" in scan["Index Cond"] for scan in outbox_scans(generic))


@pytest.fixture
def outbox_analyzed_empty():
    """The outbox after a purge and an autovacuum: no live rows, pages kept."""
    store = PostgresStore("test-mark-plan")
    conn = store.conn
    conn.execute(f"ALTER TABLE {OUTBOX} SET (autovacuum_enabled = false)")
    try:
        insert_pending(conn, 2_000)
        conn.execute(f"DELETE FROM {OUTBOX}")
        conn.execute(f"VACUUM (ANALYZE, TRUNCATE false) {OUTBOX}")
        pages, tuples = conn.execute(
            "SELECT relpages, reltuples FROM pg_class WHERE relname = %s", [OUTBOX]
        ).fetchone()
        assert pages > 0 and tuples == 0  # the statistics this test is about
        insert_pending(conn, BURST)
        yield store
    finally:
        conn.execute(f"ALTER TABLE {OUTBOX} RESET (autovacuum_enabled)")
        store.close()


def test_a_mark_after_a_burst_into_an_outbox_analyzed_empty_uses_the_primary_key(
    outbox_analyzed_empty,
):
    store = outbox_analyzed_empty
    epoch = store.bump_lease(shard=0, holder="test-mark-plan")
    rows = store.claim(after=0, limit=MARKED, shards=None, shard_count=1)
    seqs = [row.seq for row in rows]
    with explained(store) as explaining:
        marked = store.mark_published(
            seqs=seqs,
            partitions=[seq % 3 for seq in seqs],
            offsets=[1000 + i for i in range(len(seqs))],
            shard=0,
            epoch=epoch,
            published_at=datetime.now(UTC),
        )

    assert marked == MARKED
    assert_lookups_by_key_in_both(explaining.plans)
    published = OutboxEvent.objects.published()
    assert published.count() == MARKED
    for i in (0, MARKED // 2, MARKED - 1):
        row = published.get(seq=seqs[i])
        assert (row.partition, row.offset) == (seqs[i] % 3, 1000 + i)
        assert row.published_at is not None and row.last_error == ""
    assert OutboxEvent.objects.pending().count() == BURST - MARKED


def test_failures_after_a_burst_into_an_outbox_analyzed_empty_use_the_primary_key(
    outbox_analyzed_empty,
):
    store = outbox_analyzed_empty
    epoch = store.bump_lease(shard=0, holder="test-mark-plan")
    rows = store.claim(after=0, limit=MARKED, shards=None, shard_count=1)
    failures = [(row.seq, f"broker refused {row.seq}") for row in rows]
    with explained(store) as explaining:
        counted = store.record_failures(
            failures=failures, shard=0, epoch=epoch, max_backoff=60.0
        )

    assert sorted(seq for seq, _, _ in counted) == [seq for seq, _ in failures]
    assert {attempts for _, attempts, _ in counted} == {1}
    assert_lookups_by_key_in_both(explaining.plans)
    seq, error = failures[MARKED // 2]
    row = OutboxEvent.objects.get(seq=seq)
    assert (row.attempts, row.last_error) == (1, error)
    assert row.next_attempt_at is not None and row.published_at is None
    assert OutboxEvent.objects.filter(attempts=1).count() == MARKED
