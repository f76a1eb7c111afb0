"""Relay throughput and latency, empty and over a month of history, and its ceilings.

    .venv/bin/python bench/relay.py                # 100,000 events, empty outbox
    .venv/bin/python bench/relay.py --history      # and again over 1,000,000 old rows
    .venv/bin/python bench/relay.py --history 250000 --quick   # small, for development

(a) this relay (`manage.py run_relay`, a real process) drains N pending events, three
    times (the median is reported: the machine may be shared);
(b) a naive relay drains a sample the way the Django outbox libraries do: one row per
    transaction (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1), produce, flush, mark;
(c) the same producer settings with no database: the broker-side ceiling;
(d) the relay's own claim and mark statements (relay.store.PostgresStore, same batch
    size, claims and marks on two connections at once as the relay does) over N
    pending rows with no broker: the database-side ceiling; (e) = min(c, d), and
    a/e says how close the relay comes to what its two sides allow;
then commit-to-acknowledgement latency while events are committed at a steady
500/s, one transaction each, as the API does (with the CPU each process and the whole
machine used meanwhile: this process commits them, on the same cores); and the relay's
CPU use while idle.

With ``--history N`` (1,000,000 when given without a value; 50,000 with --quick) the
script then fills the outbox with N published rows in the server (INSERT ... SELECT
generate_series: the columns and payload of real events, 4 per key over all buckets,
created and published over the last four weeks, VACUUM ANALYZE after), prints the
EXPLAIN (ANALYZE, BUFFERS) of the relay's claim, look-back and mark statements at
that size, measures (d) and (a) and the latency again, then runs `manage.py
outbox_purge --older-than 14d` (a real process; it deletes the older half) while
events are committed at 500/s, for the purge's rows/s and the relay's latency
meanwhile. The relay runs with OUTBOX_RETENTION=3650d so that its own purge leaves
the history alone. The last line is JSON (``relay_events_per_s`` is the figure over
the history when there is one, ``relay_events_per_s_empty`` the empty one).
"""

import argparse
import os
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from common import (
    ROOT,
    PeakRss,
    add_broker_argument,
    bench_env,
    machine,
    percentile,
    print_result,
    print_table,
    progress,
    recreate_database,
    setup_django,
    start_broker,
)
from cpu import machine_busy_seconds
from outbox_history import (
    PurgeRun,
    explain_relay_statements,
    fill_history,
    plan_summary,
)

from devtools.process import Process, cpu_seconds

TOPIC = "bench-appointments"
PURGE_OLDER_THAN = "14d"  # the older half of the four weeks of history
DEFAULT_HISTORY, QUICK_HISTORY = 1_000_000, 50_000


def event_data(key: str, n: int) -> dict:
    """About 300 bytes of JSON, shaped like an appointment event."""
    return {
        "appointmentId": key,
        "patientId": 100_000 + n % 5000,
        "doctorId": 1 + n % 40,
        "doctorUserId": 9_000 + n % 40,
        "doctorName": "Dr. Margaret Hamilton-Smith",
        "date": "2027-03-%02d" % (1 + n % 28),
        "timeSlot": "%02d:%02d" % (8 + n % 9, 30 * (n % 2)),
        "reason": "Follow-up consultation about the results of the blood test, n=%d"
        % n,
        "status": "booked",
    }


def iter_events(n: int):
    """n appointment events, 4 per key, keys taking turns."""
    from relay.events import Event

    keys = [str(uuid.uuid4()) for _ in range(max(1, n // 4))]
    for i in range(n):
        key = keys[i % len(keys)]
        yield Event(
            type="appointment.booked",
            aggregatetype="appointment",
            aggregateid=key,
            data=event_data(key, i),
            source="/healthcare/appointments",
        )


def make_events(n: int):
    return list(iter_events(n))


def insert_pending(n: int) -> float:
    """Commit n events in one transaction; returns the commit time (epoch seconds)."""
    from django.db import transaction

    from relay.events import enqueue_many

    events = make_events(n)
    with transaction.atomic():
        for i in range(0, n, 10_000):
            enqueue_many(events[i : i + 10_000])
    return time.time()


def pending_count() -> int:
    from relay.models import OutboxEvent

    return OutboxEvent.objects.pending().count()


def wait_drained(total: int, label: str, timeout: float) -> bool:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        left = pending_count()
        progress(label, total - left, total, started)
        if left == 0:
            return True
        time.sleep(0.1)
    return False


def last_published() -> float:
    from django.db.models import Max

    from relay.models import OutboxEvent

    return OutboxEvent.objects.aggregate(t=Max("published_at"))["t"].timestamp()


def reset_outbox(keep_up_to: int = 0) -> None:
    """Delete the rows after seq ``keep_up_to`` (the history stays), then VACUUM."""
    from django.db import connection

    from relay.models import OutboxEvent

    OutboxEvent.objects.filter(seq__gt=keep_up_to).delete()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE relay_outboxevent")


# -- CPU use --------------------------------------------------------------------------
def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on this machine (backends and helpers)."""
    pids = []
    for entry in os.scandir("/proc"):
        try:
            with open(f"/proc/{entry.name}/comm") as f:
                if entry.name.isdigit() and f.read().strip() == "postgres":
                    pids.append(int(entry.name))
        except OSError:
            pass
    return pids


class CpuUse:
    """CPU seconds each group of processes uses while a block runs.

    ``groups`` maps a name to a function that lists its pids (asked at the start and
    at the end: a process that ends in between is not counted).
    """

    def __init__(self, **groups):
        self.groups = groups
        self.used: dict[str, float] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        return {
            name: {pid: cpu_seconds(pid) for pid in pids()}
            for name, pids in self.groups.items()
        }

    def __enter__(self) -> "CpuUse":
        self.started, self._before = time.monotonic(), self._sample()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.monotonic() - self.started
        for name, after in self._sample().items():
            before = self._before[name]
            self.used[name] = sum(t - before.get(pid, 0.0) for pid, t in after.items())


# -- (c) broker-side ceiling ---------------------------------------------------------
def measure_ceiling(n: int, batch_size: int, cpu: CpuUse) -> float:
    """The relay's own producer (same settings, transactions of batch_size), no database.

    ``cpu`` measures the produce loop.
    """
    import json

    from messaging.topics import ensure_topics
    from relay.events import cloudevent_headers, outbox_row
    from relay.publisher import ShardPublisher, ShardTransaction
    from relay.store import ClaimedRow

    ensure_topics([TOPIC])  # the relay makes it later; Apache Kafka auto-creates none
    rows = []
    for seq, event in enumerate(make_events(n)):
        row = outbox_row(event)
        payload = json.dumps(row.payload)
        headers = cloudevent_headers(event)
        rows.append(
            ClaimedRow(
                seq, 0, TOPIC, row.key, payload, headers, 0, None, str(event.event_id)
            )
        )
    publisher = ShardPublisher(
        0, **{"transactional.id": f"bench-ceiling-{uuid.uuid4()}"}
    )
    publisher.start(timeout=30)
    with cpu:
        for i in range(0, n, batch_size):
            chunk = rows[i : i + batch_size]
            part = ShardTransaction(0, 0, publisher, len(chunk))
            publisher.begin()
            for row in chunk:
                part.send(row, row.headers)
            publisher.commit(deadline=time.monotonic() + 60)
            assert min(part.offsets) >= 0, "every message acknowledged"
    publisher.close()
    return n / cpu.seconds


# -- (d) database-side ceiling -------------------------------------------------------
def measure_db_ceiling(batch_size: int, cpu: CpuUse) -> float:
    """Claim and mark every pending row with the relay's statements, no broker.

    As in the relay, the marks of batch N run on a second connection (a thread)
    while batch N+1 is claimed, at most a few batches behind. ``cpu`` measures it.
    """
    from relay.store import PostgresStore

    claimer, marker = PostgresStore("bench-db-claim"), PostgresStore("bench-db-mark")
    epoch = claimer.bump_lease(shard=0, holder="bench-db-ceiling")
    batches: queue.Queue = queue.Queue(maxsize=3)
    marked = []

    def mark_all():
        while (seqs := batches.get()) is not None:
            try:
                marked.append(
                    marker.mark_published(
                        seqs=seqs,
                        partitions=[0] * len(seqs),
                        offsets=list(range(len(seqs))),
                        shard=0,
                        epoch=epoch,
                        published_at=datetime.now(UTC),
                    )
                )
            except Exception as exc:  # the count check below reports it
                print(f"mark failed: {exc}", file=sys.stderr)

    total = pending_count()
    thread = threading.Thread(target=mark_all, name="bench-db-mark")
    after = 0
    try:
        with cpu:
            thread.start()
            scope = {"shards": None, "shard_count": 1}
            while rows := claimer.claim(after=after, limit=batch_size, **scope):
                batches.put([row.seq for row in rows])
                after = rows[-1].seq
            batches.put(None)
            thread.join()
    finally:
        if thread.is_alive():
            batches.put(None)
            thread.join()
        claimer.close()
        marker.close()
    if sum(marked) != total:
        raise RuntimeError(f"marked {sum(marked)} of {total} rows")
    return total / cpu.seconds


# -- (b) naive -------------------------------------------------------------------
def measure_naive(n: int, time_limit: float) -> tuple[float, int]:
    """One row per transaction and a flush per message, as the outbox libraries do."""
    import json

    from confluent_kafka import Producer
    from django.db import transaction
    from django.utils import timezone

    from messaging import config as kafka
    from relay.models import OutboxEvent

    reset_outbox()
    insert_pending(n)
    producer = Producer(kafka.producer_config())
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < time_limit:
        with transaction.atomic():
            row = (
                OutboxEvent.objects.select_for_update(skip_locked=True)
                .filter(published_at__isnull=True)
                .order_by("seq")
                .first()
            )
            if row is None:
                break
            producer.produce(
                row.topic,
                json.dumps(row.payload).encode(),
                row.key.encode(),
                headers=row.headers,
            )
            producer.flush(10)
            row.published_at = timezone.now()
            row.save(update_fields=["published_at"])
        done += 1
        if done % 100 == 0:
            progress("naive relay", done, n, started)
    elapsed = time.perf_counter() - started
    sys.stderr.write("\n")
    reset_outbox()
    return done / elapsed, done


# -- (a) and latency: the relay as a real process --------------------------------------
def start_relay(env: dict, log_path: Path) -> Process:
    """``manage.py run_relay`` (its log started afresh), once its producer is up."""
    log_path.unlink(missing_ok=True)
    argv = [sys.executable, "manage.py", "run_relay"]
    relay = Process("run_relay", argv, log_path=log_path, env=env, cwd=ROOT)
    return relay.start(ready=lambda: relay.log_contains("producer ready"), timeout=60)


def measure_latency(rate: int, seconds: float, busy=None) -> list[float]:
    """Commit events one transaction each at a steady rate; commit-to-ack in ms.

    For ``seconds``, or with ``busy`` for as long as ``busy()`` is true (at most
    ``seconds``).
    """
    from django.db import connection, transaction

    from relay.events import enqueue
    from relay.models import OutboxEvent

    committed: dict[uuid.UUID, float] = {}
    started = time.monotonic()
    for i, event in enumerate(iter_events(int(rate * seconds))):
        if busy is not None and not busy():
            break
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with transaction.atomic():
            enqueue(event)
        committed[event.event_id] = time.time()
    connection.close()
    wait_drained(len(committed), "latency drain", timeout=60)
    published = dict(
        OutboxEvent.objects.filter(event_id__in=list(committed)).values_list(
            "event_id", "published_at"
        )
    )
    return [(published[i].timestamp() - t) * 1000 for i, t in committed.items()]


@dataclass
class RelayRun:
    """What one relay process measured over one state of the outbox."""

    rounds: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    peak_mb: float = 0.0
    idle_cpu: float | None = None
    purge_latencies: list[float] = field(default_factory=list)
    latency_cpu: dict[str, float] = field(default_factory=dict)  # % of a core at 500/s
    purged: int = 0
    purge_seconds: float = float("nan")
    cpu: dict[str, float] = field(default_factory=dict)  # seconds while draining
    drain_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return percentile(self.rounds, 50)


def drain_rounds(args, run: RelayRun, keep_up_to: int, groups: dict) -> None:
    """Drain N fresh pending events ``args.rounds`` times: events/s and CPU of each."""
    label = "relay over history" if keep_up_to else "relay"
    for _ in range(args.rounds):
        reset_outbox(keep_up_to)
        committed_at = insert_pending(args.events)
        with CpuUse(**groups) as cpu:
            if not wait_drained(args.events, label, timeout=600):
                raise RuntimeError("the relay did not drain the outbox")
        run.rounds.append(args.events / (last_published() - committed_at))
        run.drain_seconds += cpu.seconds
        for name, seconds in cpu.used.items():
            run.cpu[name] = run.cpu.get(name, 0.0) + seconds


def purge_under_load(run: RelayRun, env: dict, seconds: float) -> None:
    """outbox_purge of the older history while events are committed at 500/s."""
    purge = PurgeRun(env, PURGE_OLDER_THAN, ROOT / "var" / "bench-purge.log")
    try:
        purge.start()
        run.purge_latencies = measure_latency(500, seconds, busy=purge.running)
        run.purged, run.purge_seconds = purge.wait()
    finally:
        purge.stop()


def relay_run(args, env: dict, keep_up_to: int, broker_pid: int) -> RelayRun:
    """Start run_relay; drain rounds, latency at 500/s (and idle CPU, or a purge)."""
    history = keep_up_to > 0
    relay = start_relay(env, ROOT / "var" / "bench-relay.log")
    run = RelayRun()
    try:
        with PeakRss(relay.pid) as rss:
            drain_rounds(args, run, keep_up_to, process_groups(broker_pid, relay.pid))
        run.peak_mb = rss.peak_mb
        if not history:
            cpu_before = cpu_seconds(relay.pid)
            time.sleep(args.idle_seconds)
            used = cpu_seconds(relay.pid) - cpu_before
            run.idle_cpu = used / args.idle_seconds * 100
        run.latencies, run.latency_cpu = latency_with_cpu(
            args, process_groups(broker_pid, relay.pid)
        )
        if history:
            purge_under_load(run, env, seconds=300)
        status = relay.stop(grace=15)
        if status != 0:
            raise RuntimeError(f"relay exited with {status}")
    finally:
        relay.kill()
    return run


# -- the run -------------------------------------------------------------------------
@dataclass
class Results:
    ceiling: float
    db_empty: float
    naive: float
    naive_done: int
    empty: RelayRun | None = None
    history_rows: int = 0
    db_history: float = float("nan")
    history: RelayRun | None = None
    plans: list[tuple[str, str]] = field(default_factory=list)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)  # (c), (d)

    @property
    def main(self) -> RelayRun:
        """The headline run: over the history when there is one."""
        return self.history or self.empty

    @property
    def db(self) -> float:
        return self.db_history if self.history else self.db_empty


def latency_with_cpu(args, groups: dict) -> tuple[list[float], dict[str, float]]:
    """measure_latency at 500/s, and what each process and the whole machine used
    meanwhile (% of one core): the committing bench is on the same cores."""
    busy = machine_busy_seconds()
    with CpuUse(**groups) as cpu:
        latencies = measure_latency(500, args.latency_seconds)
    busy = machine_busy_seconds() - busy
    share = {name: used / cpu.seconds * 100 for name, used in cpu.used.items()}
    return latencies, share | {"machine": busy / cpu.seconds * 100}


def latency_cpu_row(run: RelayRun) -> list:
    parts = ", ".join(f"{name} {pct:.0f}" for name, pct in run.latency_cpu.items())
    return [
        f"    CPU % of one core meanwhile ({os.cpu_count()} cores)",
        parts,
        "",
    ]


def process_groups(broker_pid: int, relay_pid: int | None = None) -> dict:
    """The processes whose CPU the bench reports: pid lists by name."""
    groups = {
        "bench": lambda: [os.getpid()],
        "PostgreSQL": postgres_pids,
        "broker": lambda: [broker_pid],
    }
    return {"relay": lambda: [relay_pid], **groups} if relay_pid else groups


def per_100k(used: dict[str, float], events: int) -> dict[str, float]:
    """CPU seconds per 100,000 events, by process."""
    return {name: round(s * 100_000 / events, 2) for name, s in used.items()}


def measure_baselines(args, broker_pid: int) -> Results:
    """(c), (d) on the empty outbox and (b): nothing but this process runs."""
    cpu = CpuUse(**process_groups(broker_pid))
    ceiling = measure_ceiling(args.events, args.batch_size, cpu)
    cpu_c = per_100k(cpu.used, args.events)
    print(f"(c) broker-side ceiling: {ceiling:,.0f} events/s", file=sys.stderr)
    reset_outbox()
    insert_pending(args.events)
    cpu = CpuUse(**process_groups(broker_pid))
    db_empty = measure_db_ceiling(args.batch_size, cpu)
    print(f"(d) database-side ceiling: {db_empty:,.0f} events/s", file=sys.stderr)
    reset_outbox()
    naive, naive_done = measure_naive(args.naive_events, args.naive_seconds)
    results = Results(ceiling, db_empty, naive, naive_done)
    results.cpu = {"c": cpu_c, "d": per_100k(cpu.used, args.events)}
    return results


def measure_history(args, results: Results, broker_pid: int) -> int:
    """Fill the history; plans and (d) over it; returns the last history seq."""
    last_seq = fill_history(args.history, TOPIC)
    results.history_rows = args.history
    insert_pending(args.events)
    results.plans = explain_relay_statements(args.batch_size)
    cpu = CpuUse(**process_groups(broker_pid))
    results.db_history = measure_db_ceiling(args.batch_size, cpu)
    results.cpu["d over history"] = per_100k(cpu.used, args.events)
    print(
        f"(d) over {args.history:,} rows: {results.db_history:,.0f} events/s",
        file=sys.stderr,
    )
    reset_outbox(last_seq)
    return last_seq


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--history",
        type=int,
        nargs="?",
        const=-1,
        default=0,
        help="published rows to measure over as well "
        f"(alone: {DEFAULT_HISTORY:,}, with --quick {QUICK_HISTORY:,})",
    )
    parser.add_argument("--naive-events", type=int, default=3_000)
    parser.add_argument("--naive-seconds", type=float, default=30)
    parser.add_argument("--latency-seconds", type=float, default=10)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="drains of N events; the median is reported",
    )
    parser.add_argument("--quick", action="store_true", help="small N for development")
    add_broker_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.events, args.naive_events, args.naive_seconds = 10_000, 300, 10
        args.latency_seconds, args.idle_seconds, args.rounds = 3, 5, 1
    if args.history < 0:
        args.history = QUICK_HISTORY if args.quick else DEFAULT_HISTORY
    return args


def main() -> int:
    args = parse_args()
    broker = start_broker(args.broker)
    extra = {
        "OUTBOX_APPOINTMENT_TOPIC": TOPIC,
        "OUTBOX_BATCH_SIZE": str(args.batch_size),
        "OUTBOX_RETENTION": "3650d",  # the relay's own purge leaves the history
    }
    try:  # the broker is stopped whatever fails from here on
        recreate_database()
        setup_django(broker.address, **extra)
        env = {**os.environ, **bench_env(broker.address, **extra), "LOG_LEVEL": "INFO"}
        broker_pid = broker.process.pid
        results = measure_baselines(args, broker_pid)
        results.empty = relay_run(args, env, 0, broker_pid)
        if args.history:
            last_seq = measure_history(args, results, broker_pid)
            results.history = relay_run(args, env, last_seq, broker_pid)
    finally:
        broker.stop()
    report(args, results)
    return 0


# -- the report ----------------------------------------------------------------------
def relay_rows(args, res: Results) -> list[list]:
    empty, main = res.empty, res.main
    over = f"over {res.history_rows:,} rows" if res.history else "empty outbox"
    e = min(res.ceiling, res.db)
    return [
        [
            f"(a) this relay, empty outbox, events/s (median of {len(empty.rounds)})",
            empty.rate,
            ">= 40,000",
        ],
        ["    each round", ", ".join(f"{r:,.0f}" for r in empty.rounds), ""],
        run_cpu_row(empty, args.events),
        [f"(b) naive relay, events/s ({res.naive_done:,} events)", res.naive, ""],
        ["(c) broker-side ceiling: producer, no database", res.ceiling, ""],
        cpu_row(res.cpu["c"]),
        ["(d) database-side ceiling: claim + mark, no broker", res.db_empty, ""],
        cpu_row(res.cpu["d"]),
        [f"a/b ({over})", f"{main.rate / res.naive:,.1f}", ">= 20"],
        [f"a/c ({over})", f"{main.rate / res.ceiling:.2f}", ""],
        [f"a/e, e = min(c, d) = {e:,.0f} ({over})", f"{main.rate / e:.2f}", ">= 0.8"],
        [
            f"commit-to-ack p50 ms at 500/s, empty ({len(empty.latencies):,} events)",
            percentile(empty.latencies, 50),
            "",
        ],
        [
            "commit-to-ack p99 ms at 500/s, empty",
            percentile(empty.latencies, 99),
            "<= 50",
        ],
        latency_cpu_row(empty),
        [
            "relay peak RSS MB while draining",
            max(empty.peak_mb, main.peak_mb),
            "<= 200",
        ],
        [
            f"idle relay CPU % of one core ({args.idle_seconds:.0f} s)",
            empty.idle_cpu,
            "< 1",
        ],
    ]


def cpu_per_100k(run: RelayRun, events: int) -> dict[str, float]:
    """CPU seconds per 100,000 events drained, by process."""
    return per_100k(run.cpu, events * len(run.rounds))


def cpu_row(cpu: dict[str, float], busy: float | None = None) -> list:
    """CPU seconds per 100,000 events by process, and how busy the machine was."""
    parts = ", ".join(f"{name} {seconds:.2f}" for name, seconds in cpu.items())
    share = f" ({busy:.0f}% of all cores)" if busy is not None else ""
    return [f"    CPU s per 100,000 events{share}", parts, ""]


def run_cpu_row(run: RelayRun, events: int) -> list:
    busy = sum(run.cpu.values()) / (run.drain_seconds * os.cpu_count()) * 100
    return cpu_row(cpu_per_100k(run, events), busy)


def history_rows(args, res: Results) -> list[list]:
    empty, hist, n = res.empty, res.history, f"{res.history_rows:,}"
    return [
        [f"(a) over {n} published rows, events/s", hist.rate, ""],
        ["    each round", ", ".join(f"{r:,.0f}" for r in hist.rounds), ""],
        run_cpu_row(hist, args.events),
        ["    history / empty", f"{hist.rate / empty.rate:.2f}", ">= 0.85"],
        [f"(d) database-side ceiling over {n} rows", res.db_history, ""],
        cpu_row(res.cpu["d over history"]),
        [
            f"commit-to-ack p50 ms at 500/s over {n} rows",
            percentile(hist.latencies, 50),
            "",
        ],
        [
            "commit-to-ack p99 ms at 500/s over the history",
            percentile(hist.latencies, 99),
            f"<= {1.15 * percentile(empty.latencies, 99):.1f}",
        ],
        latency_cpu_row(hist),
        [
            f"outbox_purge --older-than {PURGE_OLDER_THAN}: rows/s "
            f"({hist.purged:,} rows in {hist.purge_seconds:.1f} s, start included)",
            hist.purged / hist.purge_seconds,
            ">= 50,000",
        ],
        [
            f"commit-to-ack p50 ms at 500/s during the purge "
            f"({len(hist.purge_latencies):,} events)",
            percentile(hist.purge_latencies, 50),
            "",
        ],
        [
            "commit-to-ack p99 ms at 500/s during the purge",
            percentile(hist.purge_latencies, 99),
            "<= 50",
        ],
    ]


def print_plans(args, res: Results) -> None:
    print(
        f"\nQuery plans of relay.store.PostgresStore's statements over "
        f"{res.history_rows:,} published and {args.events:,} pending rows "
        f"(EXPLAIN (ANALYZE, BUFFERS), batch {args.batch_size:,})"
    )
    for name, plan in res.plans:
        print(f"\n  {name}: {plan_summary(plan)}")
        print("    " + plan.replace("\n", "\n    "))


def result_line(args, res: Results) -> dict:
    empty, main = res.empty, res.main
    e = min(res.ceiling, res.db)
    result = {
        "broker": args.broker,
        "relay_mode": "poll",
        "history_rows": res.history_rows,
        "relay_events_per_s": round(main.rate),
        "relay_events_per_s_empty": round(empty.rate),
        "relay_rounds_events_per_s": [round(r) for r in main.rounds],
        "naive_events_per_s": round(res.naive, 1),
        "ceiling_events_per_s": round(res.ceiling),
        "db_ceiling_events_per_s": round(res.db),
        "db_ceiling_events_per_s_empty": round(res.db_empty),
        "ratio_a_b": round(main.rate / res.naive, 1),
        "ratio_a_c": round(main.rate / res.ceiling, 3),
        "ratio_a_e": round(main.rate / e, 3),
        "latency_p50_ms": round(percentile(main.latencies, 50), 1),
        "latency_p99_ms": round(percentile(main.latencies, 99), 1),
        "latency_p50_ms_empty": round(percentile(empty.latencies, 50), 1),
        "latency_p99_ms_empty": round(percentile(empty.latencies, 99), 1),
        "latency_cpu_pct_empty": {
            name: round(pct, 1) for name, pct in empty.latency_cpu.items()
        },
        "relay_peak_rss_mb": round(max(empty.peak_mb, main.peak_mb), 1),
        "relay_idle_cpu_percent": round(empty.idle_cpu, 2),
        "drain_cpu_s_per_100k": cpu_per_100k(main, args.events),
    }
    if res.history:
        result.update(
            relay_rounds_events_per_s_empty=[round(r) for r in empty.rounds],
            ratio_a_e_empty=round(empty.rate / min(res.ceiling, res.db_empty), 3),
            purge_rows=main.purged,
            purge_rows_per_s=round(main.purged / main.purge_seconds),
            latency_p50_ms_purge=round(percentile(main.purge_latencies, 50), 1),
            latency_p99_ms_purge=round(percentile(main.purge_latencies, 99), 1),
        )
    return result


def report(args, res: Results) -> None:
    if res.plans:
        print_plans(args, res)
    rows = relay_rows(args, res) + (history_rows(args, res) if res.history else [])
    print_table(
        f"Relay drain of {args.events:,} events of ~300 bytes ({machine()})",
        ["measure", "value", "target"],
        rows,
    )
    print_result(result_line(args, res))


if __name__ == "__main__":
    sys.exit(main())
