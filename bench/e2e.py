"""End to end: booking commit -> relay -> broker -> consumer -> committed notification.

The booking service (appointments.services.appointment_book) is called at a steady
100 and then 1,000 events/s for a few seconds each, by worker processes on an open
schedule (a booking that falls behind is made at once, never skipped), with
`manage.py run_relay` and `manage.py run_consumer` running as subprocesses against
the same PostgreSQL and broker. Every booking gets its own doctor, day and slot, so
the booking rules never refuse one.

Latency = the moment the patient's notification is visible in the database (a
separate process polls every 2 ms, so it is at most ~2 ms late) minus the moment
appointment_book returned (its transaction committed). Prints p50/p95/p99 per rate
and, last, one JSON line with p50_ms_100, p99_ms_100, p50_ms_1000, p99_ms_1000.

    .venv/bin/python bench/e2e.py [--quick] [--seconds S]
"""

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from datetime import time as clock

from common import (
    BENCH_DATABASE_URL,
    ROOT,
    add_broker_argument,
    bench_env,
    machine,
    percentile,
    print_result,
    print_table,
    recreate_database,
    setup_django,
    start_broker,
)

TOPIC = "appointments-e2e"
DOCTORS, PATIENTS = 250, 600
SLOTS = [clock(h, m) for h in range(9, 16) for m in (0, 30)]  # 09:00 .. 15:30
WORKERS = 4
POLL_S = 0.002


def make_people():
    """Doctors (open Monday to Friday, 9 to 17) and patients."""
    from django.contrib.auth import get_user_model

    from appointments import models

    User = get_user_model()
    users = User.objects.bulk_create(
        [
            User(username=f"e2e-{i}", email=f"e2e-{i}@example.com")
            for i in range(DOCTORS + PATIENTS)
        ]
    )
    doctors = models.Doctor.objects.bulk_create(
        [
            models.Doctor(user=u, name=f"Dr. Bench {i}")
            for i, u in enumerate(users[:DOCTORS])
        ]
    )
    models.WorkingHours.objects.bulk_create(
        [
            models.WorkingHours(doctor=d, weekday=day, start=clock(9), end=clock(17))
            for d in doctors
            for day in range(5)
        ]
    )
    return [d.id for d in doctors], [u.id for u in users[DOCTORS:]]


def free_slots(doctors, patients):
    """(patient, doctor, day, slot) with no two bookings on one doctor or patient slot."""
    day = date.today() + timedelta(days=7)
    n = 0
    while True:
        if day.weekday() < 5:
            for slot in SLOTS:
                for doctor in doctors:
                    yield patients[n % len(patients)], doctor, day, slot
                    n += 1
        day += timedelta(days=1)


def book_worker(schedule, start_at: float, results) -> None:
    """Book each (offset, patient, doctor, day, slot) at start_at + offset; report commits."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from appointments.models import Doctor
    from appointments.services import appointment_book

    User = get_user_model()
    patients = {u.id: u for u in User.objects.filter(id__in={s[1] for s in schedule})}
    doctors = {d.id: d for d in Doctor.objects.filter(id__in={s[2] for s in schedule})}
    done, refused = [], []
    for offset, patient, doctor, day, slot in schedule:
        delay = start_at + offset - time.time()
        if delay > 0:
            time.sleep(delay)
        try:
            appointment = appointment_book(
                patient=patients[patient],
                doctor=doctors[doctor],
                date=day,
                time_slot=slot,
            )
        except Exception as exc:  # a booking rule refused it: count it, go on
            refused.append(f"{type(exc).__name__}: {exc}")
            continue
        done.append((str(appointment.id), time.time(), start_at + offset))
    connection.close()
    results.put((done, refused))


def observe(patients, stop, results) -> None:
    """Poll for new patient notifications every POLL_S; report when each became visible."""
    import psycopg

    seen, last_id = {}, 0
    with psycopg.connect(BENCH_DATABASE_URL, autocommit=True) as conn:
        while not stop.is_set():
            rows = conn.execute(
                "SELECT id, appointment_id FROM notifications_notification "
                "WHERE id > %s AND recipient_id = ANY(%s) ORDER BY id",
                (last_id, patients),
            ).fetchall()
            now = time.time()
            for row_id, appointment in rows:
                seen.setdefault(str(appointment), now)
                last_id = max(last_id, row_id)
            time.sleep(POLL_S)
    results.put(seen)


def start(command: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def applied_events() -> int:
    from notifications.models import ProcessedEvent

    return ProcessedEvent.objects.count()


def run_rate(rate: int, seconds: float, slots, patients) -> dict:
    """Book at `rate` per second for `seconds`; the latency of each booking's notification."""
    from django.db import connections

    expected = applied_events() + int(rate * seconds)
    connections.close_all()  # the processes forked below must not share a connection
    count = int(rate * seconds)
    schedule = [(i / rate, *next(slots)) for i in range(count)]
    ctx = multiprocessing.get_context("fork")
    results, seen_q, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    observer = ctx.Process(target=observe, args=(patients, stop, seen_q))
    observer.start()
    start_at = time.time() + 1.0
    workers = [
        ctx.Process(target=book_worker, args=(schedule[w::WORKERS], start_at, results))
        for w in range(WORKERS)
    ]
    for w in workers:
        w.start()
    booked, refused = [], []
    for _ in workers:
        done, bad = results.get()
        booked += done
        refused += bad
    for w in workers:
        w.join()
    deadline = time.time() + 30
    while applied_events() < expected - len(refused) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)  # the observer's last poll
    stop.set()
    seen = seen_q.get()
    observer.join()
    latencies = [
        (seen[a] - committed) * 1000 for a, committed, _ in booked if a in seen
    ]
    relay_ms, consumer_ms = stages([a for a, _, _ in booked])
    lateness = [(committed - due) * 1000 for _, committed, due in booked]
    span = max(c for _, c, _ in booked) - start_at if booked else 0
    if refused:
        print(f"  {len(refused)} bookings refused, e.g. {refused[0]}", file=sys.stderr)
    return {
        "rate": rate,
        "booked": len(booked),
        "achieved": len(booked) / span if span else 0,
        "missing": len(booked) - len(latencies),
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "max": max(latencies, default=float("nan")),
        "late_p99": percentile(lateness, 99),
        "relay_p50": percentile(relay_ms, 50),
        "consumer_p50": percentile(consumer_ms, 50),
    }


def stages(appointments: list[str]) -> tuple[list[float], list[float]]:
    """Where the time went, from the rows' own clocks: event created -> published by
    the relay (acknowledged) -> its batch started in the consumer."""
    from notifications.models import ProcessedEvent
    from relay.models import OutboxEvent

    rows = OutboxEvent.objects.filter(aggregateid__in=appointments).values_list(
        "event_id", "created_at", "published_at"
    )
    processed = dict(
        ProcessedEvent.objects.filter(event_id__in=[r[0] for r in rows]).values_list(
            "event_id", "processed_at"
        )
    )
    relay_ms, consumer_ms = [], []
    for event_id, created, published in rows:
        if published and event_id in processed:
            relay_ms.append((published - created).total_seconds() * 1000)
            consumer_ms.append((processed[event_id] - published).total_seconds() * 1000)
    return relay_ms, consumer_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=10, help="per rate (default 10)"
    )
    parser.add_argument("--quick", action="store_true", help="3 seconds per rate")
    parser.add_argument(
        "--relay",
        choices=["poll", "cdc"],
        default="poll",
        help="cdc: run_relay and Debezium side by side on Apache Kafka (bench/e2e_cdc.py)",
    )
    add_broker_argument(parser)
    args = parser.parse_args()
    if args.relay == "cdc":
        import e2e_cdc

        pace = ["--quick"] if args.quick else ["--seconds", str(args.seconds)]
        sys.argv = [e2e_cdc.__file__, *pace]
        return e2e_cdc.main()
    seconds = 3 if args.quick else args.seconds

    recreate_database()
    broker = start_broker(args.broker)
    topics = {
        "OUTBOX_APPOINTMENT_TOPIC": TOPIC,
        "CONSUMER_TOPICS": TOPIC,
        "CONSUMER_DLQ_TOPIC": f"{TOPIC}.dlq",
        "CONSUMER_GROUP": "e2e-consumer",
        "OUTBOX_POLL_INTERVAL_MS": "100",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
    }
    procs = []
    try:
        setup_django(broker.address, **topics)
        doctors, patients = make_people()
        slots = free_slots(doctors, patients)
        env = os.environ.copy()
        env.update(bench_env(broker.address, **topics))
        for command in (["run_relay"], ["run_consumer"]):
            procs.append(start(command, env))
        warm = run_rate(
            20, 3, slots, patients
        )  # the group joins; the first events flow
        if warm["missing"]:
            raise RuntimeError(
                f"warm-up: {warm['missing']} notifications never appeared"
            )
        rows = [run_rate(rate, seconds, slots, patients) for rate in (100, 1000)]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()

    print_table(
        f"Commit -> committed notification ({machine()}; PostgreSQL; Tansu broker, "
        f"fetch.wait.max.ms=10; {seconds:g} s per rate, {WORKERS} booking processes)",
        [
            "target/s",
            "booked",
            "achieved/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "missing",
        ],
        [
            [
                r["rate"],
                r["booked"],
                r["achieved"],
                r["p50"],
                r["p95"],
                r["p99"],
                r["max"],
                r["missing"],
            ]
            for r in rows
        ],
    )
    print(
        f"  a booking waited for its turn at most {max(r['late_p99'] for r in rows):.1f} ms (p99)"
    )
    for r in rows:
        print(
            f"  {r['rate']}/s, p50 by stage: event created -> acknowledged and marked by the "
            f"relay {r['relay_p50']:.1f} ms; -> consumer batch start {r['consumer_p50']:.1f} ms"
        )
    by_rate = {r["rate"]: r for r in rows}
    print_result(
        {
            "broker": args.broker,
            "p50_ms_100": round(by_rate[100]["p50"], 1),
            "p99_ms_100": round(by_rate[100]["p99"], 1),
            "p50_ms_1000": round(by_rate[1000]["p50"], 1),
            "p99_ms_1000": round(by_rate[1000]["p99"], 1),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
