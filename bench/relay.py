"""Relay throughput, latency and memory against a naive relay and the raw produce ceiling.

    .venv/bin/python bench/relay.py            # 100,000 events (the reported numbers)
    .venv/bin/python bench/relay.py --quick    # 10,000 events, short phases

(a) this relay (`manage.py run_relay`, a real process) drains N pending events, three
    times (the median is reported: the machine may be shared);
(b) a naive relay drains a sample the way the Django outbox libraries do: one row per
    transaction (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1), produce, flush, mark;
(c) the same producer settings with no database: the ceiling on this machine;
(d) commit-to-acknowledgement latency while events are committed at a steady 500/s,
    one transaction each, as the API does; and the relay's CPU use while idle.
"""

import argparse
import os
import sys
import time
import uuid
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

from devtools.process import Process, cpu_seconds

TOPIC = "bench-appointments"


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


def make_events(n: int):
    from relay.events import Event

    keys = [str(uuid.uuid4()) for _ in range(max(1, n // 4))]
    return [
        Event(
            type="appointment.booked",
            aggregatetype="appointment",
            aggregateid=keys[i % len(keys)],
            data=event_data(keys[i % len(keys)], i),
            source="/healthcare/appointments",
        )
        for i in range(n)
    ]


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


def reset_outbox() -> None:
    from relay.models import OutboxEvent

    OutboxEvent.objects.all().delete()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE relay_outboxevent")


# -- (c) ceiling -----------------------------------------------------------------
def measure_ceiling(n: int, batch_size: int) -> float:
    """The relay's own producer (same settings, transactions of batch_size), no database."""
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
    started = time.perf_counter()
    for i in range(0, n, batch_size):
        chunk = rows[i : i + batch_size]
        part = ShardTransaction(0, 0, publisher, len(chunk))
        publisher.begin()
        for row in chunk:
            part.send(row, row.headers)
        publisher.commit(deadline=time.monotonic() + 60)
        assert min(part.offsets) >= 0, "every message acknowledged"
    elapsed = time.perf_counter() - started
    publisher.close()
    return n / elapsed


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
    return done / elapsed, done


# -- (a) and (d): the relay as a real process ----------------------------------------
def start_relay(env: dict, log_path: Path) -> Process:
    """``manage.py run_relay`` (its log started afresh), once its producer is up."""
    log_path.unlink(missing_ok=True)
    argv = [sys.executable, "manage.py", "run_relay"]
    relay = Process("run_relay", argv, log_path=log_path, env=env, cwd=ROOT)
    return relay.start(ready=lambda: relay.log_contains("producer ready"), timeout=60)


def measure_latency(rate: int, seconds: float) -> list[float]:
    """Commit events one transaction each at a steady rate; commit-to-ack in ms."""
    from django.db import connection, transaction

    from relay.events import enqueue
    from relay.models import OutboxEvent

    events = make_events(int(rate * seconds))
    committed: dict[uuid.UUID, float] = {}
    started = time.monotonic()
    for i, event in enumerate(events):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with transaction.atomic():
            enqueue(event)
        committed[event.event_id] = time.time()
    connection.close()
    wait_drained(len(events), "latency drain", timeout=60)
    published = dict(
        OutboxEvent.objects.filter(event_id__in=list(committed)).values_list(
            "event_id", "published_at"
        )
    )
    return [(published[i].timestamp() - t) * 1000 for i, t in committed.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
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

    broker = start_broker(args.broker)
    extra = {
        "OUTBOX_APPOINTMENT_TOPIC": TOPIC,
        "OUTBOX_BATCH_SIZE": str(args.batch_size),
    }
    log_path = ROOT / "var" / "bench-relay.log"
    relay = None
    try:  # the broker is stopped whatever fails from here on, the database too
        recreate_database()
        setup_django(broker.address, **extra)
        ceiling = measure_ceiling(args.events, args.batch_size)
        print(f"(c) raw produce ceiling: {ceiling:,.0f} events/s", file=sys.stderr)

        reset_outbox()
        env = {**os.environ, **bench_env(broker.address, **extra), "LOG_LEVEL": "INFO"}
        relay = start_relay(env, log_path)
        rounds = []
        with PeakRss(relay.pid) as rss:
            for _ in range(args.rounds):
                reset_outbox()
                committed_at = insert_pending(args.events)
                if not wait_drained(args.events, "relay", timeout=600):
                    raise RuntimeError("the relay did not drain the outbox")
                rounds.append(args.events / (last_published() - committed_at))
        relay_rate = percentile(rounds, 50)

        cpu_before = cpu_seconds(relay.pid)
        time.sleep(args.idle_seconds)
        idle_cpu = (cpu_seconds(relay.pid) - cpu_before) / args.idle_seconds * 100

        latencies = measure_latency(500, args.latency_seconds)
        status = relay.stop(grace=15)
        relay = None
        if status != 0:
            raise RuntimeError(f"relay exited with {status}")

        naive_rate, naive_done = measure_naive(args.naive_events, args.naive_seconds)
    finally:
        if relay is not None:
            relay.kill()
        broker.stop()

    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print_table(
        f"Relay drain of {args.events:,} events of ~300 bytes ({machine()})",
        ["measure", "value", "target"],
        [
            [
                f"(a) this relay, events/s (median of {len(rounds)})",
                relay_rate,
                ">= 40,000",
            ],
            ["    each round", ", ".join(f"{r:,.0f}" for r in rounds), ""],
            [f"(b) naive relay, events/s ({naive_done:,} events)", naive_rate, ""],
            ["(c) raw produce ceiling, events/s", ceiling, ""],
            ["a/b", f"{relay_rate / naive_rate:,.1f}", ">= 20"],
            ["a/c", f"{relay_rate / ceiling:.2f}", ">= 0.8"],
            [f"commit-to-ack p50 ms at 500/s ({len(latencies):,} events)", p50, ""],
            ["commit-to-ack p99 ms at 500/s", p99, "<= 50"],
            ["relay peak RSS MB while draining", rss.peak_mb, "<= 200"],
            [
                f"idle relay CPU % of one core ({args.idle_seconds:.0f} s)",
                idle_cpu,
                "< 1",
            ],
        ],
    )
    print_result(
        {
            "broker": args.broker,
            "relay_events_per_s": round(relay_rate),
            "relay_rounds_events_per_s": [round(r) for r in rounds],
            "naive_events_per_s": round(naive_rate, 1),
            "ceiling_events_per_s": round(ceiling),
            "ratio_a_b": round(relay_rate / naive_rate, 1),
            "ratio_a_c": round(relay_rate / ceiling, 3),
            "latency_p50_ms": round(p50, 1),
            "latency_p99_ms": round(p99, 1),
            "relay_peak_rss_mb": round(rss.peak_mb, 1),
            "relay_idle_cpu_percent": round(idle_cpu, 2),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
