"""Scaling curves: the relay across shards and processes, the consumer across members.

    .venv/bin/python bench/scaling.py [--broker kafka|tansu] [--quick]

Relay: for 1, 2 and 4 shards (`run_relay --shards N`, every relay alike), 1, 2 and
then 3 `manage.py run_relay` processes are started one by one; once they have divided
the shards (each shard led, producer ready, by exactly one relay by their
outbox_relay_shard_leader gauges, none above its fair share, every relay counted in
PostgreSQL's advisory locks) N pending events are committed in one transaction and
the rate is N / (last published_at - commit).

Consumer: on a topic of 3 and then 6 partitions, 1, 2 and 3 `run_consumer --no-email`
processes in one group; once the partitions are divided among them (each fetched by
exactly one member by their notifications_consumer_lag gauges, none above its fair
share), N events are produced in one Kafka transaction (read_committed members see
them only at its commit) and the rate is N / (last processed_at - commit).

The reference is one process with one shard (one member on 3 partitions); each
configuration is reported as a ratio to it, with the CPU % of one core that each kind
of process used during the drain (relays or consumers summed, the broker, every
PostgreSQL process, the whole machine). Plots go to var/bench/; the last line is JSON
with relay_scaling {"<relays>x<shards>": events/s} and consumer_scaling
{"<members>x<partitions>": events/s}.
"""

import argparse
import os
import sys
import time
from functools import partial

from common import (
    ROOT,
    add_broker_argument,
    bench_env,
    machine,
    print_result,
    print_table,
    progress,
    recreate_database,
    setup_django,
    start_broker,
)
from plots import BENCH_PLOTS, plot_grouped_bars
from workload import (
    CpuByKind,
    booked_record,
    divided,
    postgres_pids,
    produce_in_one_transaction,
    start_served,
    stop_all,
    wait_until,
)

from bench.consumer import make_users, truncate
from bench.relay import (
    TOPIC,
    insert_pending,
    last_published,
    reset_outbox,
    wait_drained,
)

SHARDS = (1, 2, 4)
RELAYS = (1, 2, 3)
PARTITIONS = (3, 6)
MEMBERS = (1, 2, 3)
LOGS = ROOT / "var" / "bench-scaling"

SHARD_LEADER = "outbox_relay_shard_leader"  # 1 once the shard's producer is ready
CONSUMER_LAG = "notifications_consumer_lag"  # per partition assigned and fetched


def relay_members(shard_count: int) -> int:
    """Relays running with this shard count, by their shared advisory lock."""
    from django.db import connection

    from relay.leadership import MEMBERS as MEMBERS_LOCK

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM pg_locks
            WHERE locktype = 'advisory' AND classid = %s::oid AND objid = %s
              AND objsubid = 2 AND granted AND database =
                (SELECT oid FROM pg_database WHERE datname = current_database())
            """,
            [MEMBERS_LOCK, shard_count],
        )
        return cursor.fetchone()[0]


def relays_divided(relays: list, shard_count: int) -> bool:
    shares = [
        {s["shard"] for s in r.gauge(SHARD_LEADER, lambda v: v == 1)} for r in relays
    ]
    shards = {str(s) for s in range(shard_count)}
    return relay_members(shard_count) == len(relays) and divided(shares, shards)


def cpu_kinds(kind: str, served: list, broker) -> dict:
    """What CpuByKind samples: these processes, the broker, every PostgreSQL process."""
    return {
        kind: lambda: [s.process.pid for s in served if s.process.running],
        "broker": lambda: [broker.process.pid],
        "postgres": postgres_pids,
    }


def drain_relays(relays: list, broker, events: int, label: str) -> dict:
    """Commit ``events`` pending rows at once; the rate and CPU until they are out."""
    reset_outbox()
    committed_at = insert_pending(events)
    with CpuByKind(cpu_kinds("relay", relays, broker)) as cpu:
        if not wait_drained(events, label, timeout=600):
            raise RuntimeError(f"{label}: the relays did not drain the outbox")
    return {"rate": events / (last_published() - committed_at), "cpu": cpu.percent}


def measure_relays(broker, env: dict, events: int) -> dict:
    """(relays, shards) -> drain result, relays added one by one for each shard count."""
    results = {}
    for shards in SHARDS:
        relays = []
        try:
            for count in RELAYS:
                log = LOGS / f"relay-{shards}s-{count}.log"
                args = ["run_relay", "--shards", str(shards)]
                relays.append(
                    start_served("run_relay", args, env, log, "relay: started")
                )
                waited = wait_until(
                    partial(relays_divided, relays, shards),
                    f"{count} relays dividing {shards} shards",
                )
                label = f"{count} relays x {shards} shards"
                print(f"  {label}: divided in {waited:.1f} s", file=sys.stderr)
                results[count, shards] = drain_relays(relays, broker, events, label)
        finally:
            codes = stop_all([r.process for r in relays])
        if any(codes):
            raise RuntimeError(f"a relay exited with {codes} (logs in {LOGS})")
    return results


def consumer_env(brokers: str, topic: str) -> dict:
    return {
        **os.environ,
        **bench_env(
            brokers,
            CONSUMER_TOPICS=topic,
            CONSUMER_DLQ_TOPIC=f"{topic}.dlq",
            CONSUMER_GROUP=topic,
            EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
        ),
    }


def consumers_divided(members: list, topic: str, partitions: int) -> bool:
    """Every partition fetched by exactly one member, none above its fair share."""
    shares = [
        {f"{s['topic']}[{s['partition']}]" for s in m.gauge(CONSUMER_LAG)}
        for m in members
    ]
    return divided(shares, {f"{topic}[{p}]" for p in range(partitions)})


def inbox_count() -> int:
    from notifications.models import ProcessedEvent

    return ProcessedEvent.objects.count()


def wait_applied(events: int, label: str, timeout: float = 600) -> None:
    started = time.monotonic()
    while True:
        count = inbox_count()
        progress(label, count, events, started)
        if count >= events:
            return
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{label}: {count:,} of {events:,} applied in time")
        time.sleep(0.05)


def last_processed() -> float:
    from django.db.models import Max

    from notifications.models import ProcessedEvent

    return ProcessedEvent.objects.aggregate(t=Max("processed_at"))["t"].timestamp()


def drain_consumers(broker, partitions: int, count: int, records: list) -> dict:
    """``count`` members on a fresh topic; its events committed at once, then applied."""
    from messaging.topics import ensure_topics

    truncate()
    topic = f"scale-{partitions}p-{count}m"
    ensure_topics([topic, f"{topic}.dlq"], partitions=partitions)
    env = consumer_env(broker.address, topic)
    members = []
    try:
        for i in range(count):
            log = LOGS / f"consumer-{partitions}p-{count}-{i + 1}.log"
            members.append(
                start_served("run_consumer", ["run_consumer", "--no-email"], env, log)
            )
        label = f"{count} members x {partitions} partitions"
        waited = wait_until(
            partial(consumers_divided, members, topic, partitions), f"{label} dividing"
        )
        print(f"  {label}: divided in {waited:.1f} s", file=sys.stderr)
        committed_at = produce_in_one_transaction(broker.address, topic, records, label)
        with CpuByKind(cpu_kinds("consumer", members, broker)) as cpu:
            wait_applied(len(records), label)
        rate = len(records) / (last_processed() - committed_at)
    finally:
        codes = stop_all([m.process for m in members])
    if any(codes):
        raise RuntimeError(f"a consumer exited with {codes} (logs in {LOGS})")
    return {"rate": rate, "cpu": cpu.percent}


def measure_consumers(broker, events: int) -> dict:
    """(members, partitions) -> drain result."""
    patients, doctors = make_users()
    records = [booked_record(i, patients, doctors) for i in range(events)]
    return {
        (count, partitions): drain_consumers(broker, partitions, count, records)
        for partitions in PARTITIONS
        for count in MEMBERS
    }


def table_rows(results: dict, reference: tuple, kind: str) -> list[list]:
    base = results[reference]["rate"]
    rows = []
    for (processes, units), r in results.items():
        cpu = r["cpu"]
        rows.append(
            [
                processes,
                units,
                r["rate"],
                "reference"
                if (processes, units) == reference
                else f"{r['rate'] / base:.2f}",
                cpu[kind],
                cpu["broker"],
                cpu["postgres"],
                cpu["machine"],
            ]
        )
    return rows


def counted(n: int, nouns: str) -> str:
    return f"{n} {nouns if n != 1 else nouns[:-1]}"


def plot(results: dict, reference: tuple, path, title: str, xlabel: str, bar: str):
    groups: dict[str, dict[str, float]] = {}
    for (processes, units), r in sorted(results.items(), key=lambda kv: kv[0][::-1]):
        group = groups.setdefault(counted(units, xlabel), {})
        group[counted(processes, bar)] = r["rate"]
    return plot_grouped_bars(
        groups,
        path,
        title,
        xlabel,
        "events/s",
        reference=results[reference]["rate"],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000, help="per relay drain")
    parser.add_argument(
        "--consumer-events", type=int, default=50_000, help="per consumer drain"
    )
    parser.add_argument("--batch-size", type=int, default=5000, help="relay batch")
    parser.add_argument("--quick", action="store_true", help="5,000 events a drain")
    add_broker_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.events = args.consumer_events = 5_000

    extra = {
        "OUTBOX_APPOINTMENT_TOPIC": TOPIC,
        "OUTBOX_BATCH_SIZE": str(args.batch_size),
    }
    started = time.monotonic()
    recreate_database()
    broker = start_broker(args.broker)
    try:
        setup_django(broker.address, **extra)
        env = {**os.environ, **bench_env(broker.address, **extra), "LOG_LEVEL": "INFO"}
        env["LOG_FORMAT"] = "text"
        print("relay: drains of", f"{args.events:,} events", file=sys.stderr)
        relay = measure_relays(broker, env, args.events)
        print(
            "consumer: drains of", f"{args.consumer_events:,} events", file=sys.stderr
        )
        consumer = measure_consumers(broker, args.consumer_events)
    finally:
        broker.stop()
    elapsed = time.monotonic() - started

    cpu_headers = ["broker %", "postgres %", "machine %"]
    print_table(
        f"Relay events/s, {args.events:,} events a drain, {args.broker} ({machine()})",
        ["relays", "shards", "events/s", "x 1x1", "relays %", *cpu_headers],
        table_rows(relay, (1, 1), "relay"),
    )
    print_table(
        f"Consumer events/s, {args.consumer_events:,} events a drain, {args.broker}",
        ["members", "partitions", "events/s", "x 1x3", "members %", *cpu_headers],
        table_rows(consumer, (1, 3), "consumer"),
    )
    print(
        f"\n  CPU: % of one core during the drain (relays, members: summed; postgres: "
        f"every PostgreSQL process; machine: all {os.cpu_count()} cores). {elapsed:.0f} s in all."
    )
    paths = [
        plot(
            relay,
            (1, 1),
            BENCH_PLOTS / f"relay-scaling-{args.broker}.png",
            f"Relay events/s on {args.broker} ({os.cpu_count()} cores)",
            "shards",
            "relays",
        ),
        plot(
            consumer,
            (1, 3),
            BENCH_PLOTS / f"consumer-scaling-{args.broker}.png",
            f"Consumer events/s on {args.broker} ({os.cpu_count()} cores)",
            "partitions",
            "members",
        ),
    ]
    print("  plots: " + ", ".join(str(p.relative_to(ROOT)) for p in paths))
    print_result(
        {
            "broker": args.broker,
            "relay_mode": "poll",
            "relay_scaling": {
                f"{p}x{s}": round(r["rate"]) for (p, s), r in relay.items()
            },
            "consumer_scaling": {
                f"{m}x{p}": round(r["rate"]) for (m, p), r in consumer.items()
            },
            "relay_cpu_percent": {
                f"{p}x{s}": {k: round(v) for k, v in r["cpu"].items()}
                for (p, s), r in relay.items()
            },
            "consumer_cpu_percent": {
                f"{m}x{p}": {k: round(v) for k, v in r["cpu"].items()}
                for (m, p), r in consumer.items()
            },
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
