"""End to end: booking commit -> relay -> broker -> consumer -> committed notification.

The booking service (appointments.services.appointment_book) is called at a steady
100, 500 and then 1,000 bookings/s for a few seconds each, by worker processes on
an open schedule (a booking that falls behind is made at once, never skipped; more
processes for a higher rate), with `manage.py run_relay` and `manage.py
run_consumer` running as subprocesses against the same PostgreSQL and broker.
Every booking gets its own doctor, day and slot, so the booking rules never refuse
one. The achieved rate is printed beside the offered one, and the CPU each kind of
process used during each rate (% of one core, from /proc), so the table shows
which one is at 100%.

The warm-up books at 100/s for at least --warm-up seconds, then on until the
broker's JIT compiler is quiet (at most 300 s); the CPU table shows its share.

Latency = the moment the patient's notification is visible in the database (a
separate process polls every 2 ms, so it is at most ~2 ms late) minus the moment
appointment_book returned (its transaction committed). Before the pipeline starts,
one process books in a loop to measure the service's own CPU per booking (Python
and its PostgreSQL backend). Writes the latency CDF per rate to
var/bench/e2e-cdf-<broker>.png; last, one JSON line.

    .venv/bin/python bench/e2e.py [--quick] [--seconds S] [--broker kafka|tansu]
"""

import argparse
import math
import multiprocessing
import os
import signal
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
from cpu import MACHINE, OTHERS, CpuByKind, postgres_backends, thread_seconds

from devtools.process import Process, cpu_seconds

TOPIC = "appointments-e2e"
RATES = (100, 500, 1000)
DOCTORS, PATIENTS = 250, 600
SLOTS = [clock(h, m) for h in range(9, 16) for m in (0, 30)]  # 09:00 .. 15:30
POLL_S = 0.002
# The warm-up (see warm_up): rounds at 100/s until the broker's JIT is quiet.
JIT_THREADS, JIT_QUIET = "CompilerThre", 3.0  # HotSpot's "C2 CompilerThread0", ...
WARM_UP_ROUND_S, WARM_UP_MAX_S = 10, 300
BOOKERS, OBSERVER = "booking processes", "observer (bench)"


def workers_for(rate: int) -> int:
    """Booking processes for an offered rate: enough that waiting on PostgreSQL
    (round trips, the commit's WAL flush) never holds the schedule back."""
    return max(2, math.ceil(rate / 125) + 1)


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


def load_people(bookings) -> tuple[dict, dict]:
    """The patients and the doctors (with their working hours) the bookings name."""
    from django.contrib.auth import get_user_model

    from appointments.models import Doctor

    users = get_user_model().objects.filter(id__in={b[-4] for b in bookings})
    doctors = Doctor.objects.filter(id__in={b[-3] for b in bookings})
    return (
        {u.id: u for u in users},
        {d.id: d for d in doctors.prefetch_related("working_hours")},
    )


def backend_pid() -> int:
    from django.db import connection

    connection.ensure_connection()
    return connection.connection.info.backend_pid


def book_worker(schedule, start_at, ready, go, release, results) -> None:
    """Book each (offset, patient, doctor, day, slot) at start_at + offset; report
    the commits and the CPU seconds this process spent booking."""
    from django.db import connection

    from appointments.services import appointment_book

    patients, doctors = load_people(schedule)
    ready.put(os.getpid())
    go.wait()
    begin, cpu = start_at.value, time.process_time()
    done, refused = [], []
    for offset, patient, doctor, day, slot in schedule:
        delay = begin + offset - time.time()
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
        done.append((str(appointment.id), time.time(), begin + offset))
    results.put((done, refused, time.process_time() - cpu))
    release.wait(120)  # keep the backend until the parent has read its CPU
    connection.close()


def service_loop(n: int, slots) -> dict:
    """One process books ``n`` slots back to back, no pipeline running: the CPU ms
    per booking of the Python process and of its PostgreSQL backend."""
    from appointments.services import appointment_book
    from relay.models import OutboxEvent

    bookings = [next(slots) for _ in range(n)]
    patients, doctors = load_people(bookings)
    backend = backend_pid()
    cpu, pg, started = time.process_time(), cpu_seconds(backend), time.monotonic()
    for patient, doctor, day, slot in bookings:
        appointment_book(
            patient=patients[patient], doctor=doctors[doctor], date=day, time_slot=slot
        )
    elapsed = time.monotonic() - started
    python_ms = (time.process_time() - cpu) / n * 1000
    pg_ms = (cpu_seconds(backend) - pg) / n * 1000
    OutboxEvent.objects.all().delete()  # their events are not part of the pipeline runs
    return {"n": n, "python_ms": python_ms, "pg_ms": pg_ms, "per_s": n / elapsed}


def observe(patients, stop, ready, results) -> None:
    """Poll for new patient notifications every POLL_S; report when each became visible.

    The patients' user ids follow the doctors' (make_people), so one comparison
    selects the patients' notifications: the poll stays cheap at 500 a second."""
    import psycopg

    seen, last_id = {}, 0
    with psycopg.connect(BENCH_DATABASE_URL, autocommit=True) as conn:
        ready.put(os.getpid())
        while not stop.is_set():
            rows = conn.execute(
                "SELECT id, appointment_id FROM notifications_notification "
                "WHERE id > %s AND recipient_id >= %s ORDER BY id",
                (last_id, min(patients)),
            ).fetchall()
            now = time.time()
            for row_id, appointment in rows:
                seen.setdefault(str(appointment), now)
                last_id = max(last_id, row_id)
            time.sleep(POLL_S)
    results.put(seen)


def start(command: list[str], env: dict) -> Process:
    """``manage.py COMMAND``, its output in ``var/bench-e2e-COMMAND.log``."""
    log = ROOT / "var" / f"bench-e2e-{command[0]}.log"
    argv = [sys.executable, "manage.py", *command]
    return Process(command[0], argv, log_path=log, env=env, cwd=ROOT).start()


def stop(procs: list[Process]) -> None:
    """SIGTERM to all at once, then each reaped; SIGKILL what is left after 15 s."""
    for p in procs:
        p.signal(signal.SIGTERM)
    for p in procs:
        p.stop(grace=15)


def applied_events() -> int:
    from notifications.models import ProcessedEvent

    return ProcessedEvent.objects.count()


class Run:
    """One offered rate: the observer and the booking processes, forked."""

    def __init__(self, rate: int, seconds: float, slots, patients, workers: int):
        count = int(rate * seconds)
        schedule = [(i / rate, *next(slots)) for i in range(count)]
        ctx = multiprocessing.get_context("fork")
        self.ctx, self.count = ctx, count
        self.results, self.seen_q, self.ready = ctx.Queue(), ctx.Queue(), ctx.Queue()
        self.stop, self.go, self.release = ctx.Event(), ctx.Event(), ctx.Event()
        self.start_at = ctx.Value("d", 0.0)
        self.observer = ctx.Process(
            target=observe,
            args=(patients, self.stop, self.ready, self.seen_q),
            daemon=True,  # never outlives a failed run
        )
        self.workers = [
            ctx.Process(
                target=book_worker,
                args=(
                    schedule[w::workers],
                    self.start_at,
                    self.ready,
                    self.go,
                    self.release,
                    self.results,
                ),
                daemon=True,
            )
            for w in range(workers)
        ]

    def launch(self) -> float:
        """Fork all, wait until each is ready, then set the clock going."""
        from django.db import connections

        connections.close_all()  # the processes forked here must not share one
        for p in [self.observer, *self.workers]:
            p.start()
        for _ in range(len(self.workers) + 1):
            self.ready.get(timeout=120)
        self.start_at.value = time.time() + 0.05
        self.go.set()
        return self.start_at.value

    def collect(self) -> tuple[list, list, float]:
        booked, refused, cpu = [], [], 0.0
        for _ in self.workers:
            done, bad, used = self.results.get()
            booked += done
            refused += bad
            cpu += used
        return booked, refused, cpu

    def finish(self) -> dict:
        self.release.set()
        for w in self.workers:
            w.join()
        time.sleep(0.1)  # the observer's last poll
        self.stop.set()
        seen = self.seen_q.get()
        self.observer.join()
        return seen


def run_rate(
    rate, seconds, slots, patients, *, kinds=None, workers=None, jit=None
) -> dict:
    """Book at `rate` per second for `seconds`; the latency of each booking's
    notification, and the CPU of each kind of process (``kinds``) meanwhile, and
    of the broker's JIT compiler (``jit``, a JitMeter) over the same span."""
    workers = workers or workers_for(rate)
    expected = applied_events() + int(rate * seconds)
    run = Run(rate, seconds, slots, patients, workers)
    sampler = CpuByKind(
        (kinds or {})
        | {
            BOOKERS: lambda: [w.pid for w in run.workers],
            OBSERVER: lambda: [run.observer.pid],
        }
    )
    print(f"  {rate}/s for {seconds:g} s, {workers} booking processes", file=sys.stderr)
    start_at = run.launch()
    before = sampler.snapshot()
    if jit is not None:
        jit.restart()
    booked, refused, booking_cpu = run.collect()
    cpu = sampler.percent(before, sampler.snapshot())
    jit_percent = jit.percent() if jit is not None else 0.0
    deadline = time.time() + 30
    while applied_events() < expected - len(refused) and time.time() < deadline:
        time.sleep(0.05)
    seen = run.finish()
    if refused:
        print(f"  {len(refused)} bookings refused, e.g. {refused[0]}", file=sys.stderr)
    return summarize(rate, booked, seen, start_at) | {
        "workers": workers,
        "cpu": cpu,
        "booking_cpu_ms": booking_cpu / max(len(booked), 1) * 1000,
        "broker_jit": jit_percent,
    }


def summarize(rate: int, booked: list, seen: dict, start_at: float) -> dict:
    latencies = [
        (seen[a] - committed) * 1000 for a, committed, _ in booked if a in seen
    ]
    relay_ms, consumer_ms = stages([a for a, _, _ in booked])
    lateness = [(committed - due) * 1000 for _, committed, due in booked]
    span = max(c for _, c, _ in booked) - start_at if booked else 0
    return {
        "rate": rate,
        "booked": len(booked),
        "achieved": len(booked) / span if span else 0,
        "missing": len(booked) - len(latencies),
        "latencies": latencies,
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


def pipeline_kinds(relay: Process, consumer: Process, broker) -> dict:
    """The processes of the pipeline whose CPU is sampled during each rate."""
    pids = broker_pids(broker)
    return {
        "run_relay": lambda: [relay.pid],
        "run_consumer": lambda: [consumer.pid],
        f"broker ({broker.label})": lambda: pids,
        "PostgreSQL backends": postgres_backends(BENCH_DATABASE_URL),
    }


def measure(args, broker, seconds: float) -> tuple[dict, list[dict]]:
    """The service loop, then the pipeline at each rate (started and stopped here)."""
    topics = {
        "OUTBOX_APPOINTMENT_TOPIC": TOPIC,
        "CONSUMER_TOPICS": TOPIC,
        "CONSUMER_DLQ_TOPIC": f"{TOPIC}.dlq",
        "CONSUMER_GROUP": "e2e-consumer",
        "OUTBOX_POLL_INTERVAL_MS": "100",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
    }
    setup_django(broker.address, **topics)
    doctors, patients = make_people()
    slots = free_slots(doctors, patients)
    print("  the service alone, one process", file=sys.stderr)
    service = service_loop(300 if args.quick else 1000, slots)
    env = os.environ | bench_env(broker.address, **topics)
    procs = []
    try:
        procs = [start(["run_relay"], env), start(["run_consumer"], env)]
        kinds = pipeline_kinds(*procs, broker)
        # The group joins and the first events flow; then the pipeline runs at
        # 100/s for a while before anything is measured. A fresh broker's JIT
        # compiles for its first ~30 s under load (Apache Kafka: C2 threads at 25-40%
        # of a core, then 5%), which a broker in production did long ago.
        missing = run_rate(20, 2, slots, patients)["missing"]
        if args.warm_up > 0:
            most = args.warm_up if args.quick else max(args.warm_up, WARM_UP_MAX_S)
            lost, args.warmed_s = warm_up(args.warm_up, most, broker, slots, patients)
            missing += lost
        if missing:
            raise RuntimeError(f"warm-up: {missing} notifications never appeared")
        rows = [
            run_rate(
                rate,
                seconds,
                slots,
                patients,
                kinds=kinds,
                workers=args.workers,
                jit=JitMeter(broker),
            )
            for rate in args.rates
        ]
    finally:
        stop(procs)
    return service, rows


def broker_pids(broker) -> list[int]:
    nodes = getattr(broker, "nodes", None)
    return [n.process.pid for n in nodes] if nodes else [broker.pid]


class JitMeter:
    """% of one core the broker's JIT compiler threads used since this was made
    (0 for a broker without a JIT, Tansu)."""

    def __init__(self, broker):
        self.pids = broker_pids(broker)
        self.restart()

    def restart(self) -> None:
        self.at, self.used = time.monotonic(), thread_seconds(self.pids, JIT_THREADS)

    def percent(self) -> float:
        """(HotSpot may end a compiler thread meanwhile: its time is then lost, and
        the share is never below 0.)"""
        now, used = time.monotonic(), thread_seconds(self.pids, JIT_THREADS)
        return max(0.0, 100 * (used - self.used) / max(now - self.at, 1e-9))


def warm_up(least: float, most: float, broker, slots, patients) -> tuple[int, float]:
    """Book at 100/s for at least ``least`` seconds, then on until the broker's JIT
    compiler has done its work (under JIT_QUIET % of a core over a round), for at
    most ``most`` seconds: a broker in production compiled its hot paths long ago,
    and a fresh one spends 15-40% of a core on it for minutes under this load, on
    the same two cores as everything measured. Returns the notifications missing
    and the seconds it took."""
    started, missing = time.monotonic(), 0
    while True:
        left = most - (time.monotonic() - started)
        round_s = round(max(2.0, min(WARM_UP_ROUND_S, left)))
        row = run_rate(100, round_s, slots, patients, jit=JitMeter(broker))
        missing += row["missing"]
        compiling, elapsed = row["broker_jit"], time.monotonic() - started
        print(
            f"  warm-up: {elapsed:.0f} s at 100/s, broker JIT compiler "
            f"{compiling:.1f}% of a core in the last {round_s:g} s",
            file=sys.stderr,
        )
        if elapsed >= least and compiling < JIT_QUIET:
            return missing, elapsed
        if elapsed >= most:
            if compiling >= JIT_QUIET:
                print(
                    f"  warm-up: stopped after {elapsed:.0f} s with the JIT still "
                    "compiling (its share is shown per rate below)",
                    file=sys.stderr,
                )
            return missing, elapsed


def report(
    rows: list[dict], service: dict, broker, seconds: float, warmed_s: float
) -> None:
    print_table(
        f"Commit -> committed notification ({machine()}; PostgreSQL; {broker.label}, "
        f"fetch.wait.max.ms={os.environ.get('KAFKA_FETCH_WAIT_MAX_MS', '500 (default)')}; "
        f"{seconds:g} s per rate after a {warmed_s:.0f} s warm-up, open schedule)",
        [
            "offered/s",
            "achieved/s",
            "booked",
            "processes",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "missing",
            "booking CPU ms",
        ],
        [
            [
                r["rate"],
                r["achieved"],
                r["booked"],
                r["workers"],
                r["p50"],
                r["p95"],
                r["p99"],
                r["max"],
                r["missing"],
                r["booking_cpu_ms"],
            ]
            for r in rows
        ],
    )
    kinds = [k for k in rows[0]["cpu"] if k not in (MACHINE, OTHERS)]
    table = [[kind, *(r["cpu"][kind] for r in rows)] for kind in kinds]
    at = next(i for i, kind in enumerate(kinds) if kind.startswith("broker")) + 1
    table.insert(at, ["  of which its JIT compiler", *(r["broker_jit"] for r in rows)])
    table += [[kind, *(r["cpu"][kind] for r in rows)] for kind in (OTHERS, MACHINE)]
    print_table(
        "CPU while booking at each rate, % of one core (2 cores = 200%)",
        ["process", *(f"{r['rate']:,}/s" for r in rows)],
        table,
    )
    print(
        f"  the service alone (appointment_book, one process, {service['n']:,} bookings, "
        f"{service['per_s']:,.0f}/s): {service['python_ms']:.2f} ms of Python CPU and "
        f"{service['pg_ms']:.2f} ms of its PostgreSQL backend per booking"
    )
    print(
        f"  a booking waited for its turn at most {max(r['late_p99'] for r in rows):.1f} ms (p99)"
    )
    for r in rows:
        if r["rate"] == 500:
            met = r["p50"] <= 20 and r["p99"] <= 100 and r["achieved"] >= 0.95 * 500
            print(
                f"  target at 500/s (p50 <= 20 ms, p99 <= 100 ms, the rate reached): "
                f"{'met' if met else 'NOT met'}"
            )
    for r in rows:
        print(
            f"  {r['rate']}/s, p50 by stage: event created -> acknowledged and marked by the "
            f"relay {r['relay_p50']:.1f} ms; -> consumer batch start {r['consumer_p50']:.1f} ms"
        )


def plot(rows: list[dict], broker) -> None:
    from plots import plot_cdf

    path = plot_cdf(
        {
            f"{r['rate']:,}/s offered, {r['achieved']:,.0f}/s reached": r["latencies"]
            for r in rows
        },
        ROOT / "var" / "bench" / f"e2e-cdf-{broker.kind}.png",
        f"Commit -> committed notification ({broker.label}, PostgreSQL)",
        "latency, ms",
    )
    print(f"  latency CDF: {path.relative_to(ROOT)}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=10, help="per rate (default 10)"
    )
    parser.add_argument("--quick", action="store_true", help="2 seconds per rate")
    parser.add_argument(
        "--rates",
        type=lambda text: [int(r) for r in text.split(",")],
        default=list(RATES),
        help="offered bookings/s, comma-separated (default 100,500,1000)",
    )
    parser.add_argument(
        "--workers", type=int, help="booking processes (default: by rate)"
    )
    parser.add_argument(
        "--warm-up",
        type=float,
        help="at least this many seconds at 100/s before measuring, then on until "
        "the broker's JIT is quiet, up to 300 s or this, whichever is longer "
        "(default 40; --quick: 5, no wait)",
    )
    parser.add_argument(
        "--relay",
        choices=["poll", "cdc"],
        default="poll",
        help="cdc: run_relay and Debezium side by side on Apache Kafka (bench/e2e_cdc.py)",
    )
    add_broker_argument(parser)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.relay == "cdc":
        import e2e_cdc

        pace = ["--quick"] if args.quick else ["--seconds", str(args.seconds)]
        sys.argv = [e2e_cdc.__file__, *pace]
        return e2e_cdc.main()
    seconds = 2 if args.quick else args.seconds
    if args.warm_up is None:
        args.warm_up = 5 if args.quick else 40
    args.warmed_s = 0.0
    recreate_database()
    broker = start_broker(args.broker)
    try:
        service, rows = measure(args, broker, seconds)
    finally:
        broker.stop()
    report(rows, service, broker, seconds, args.warmed_s)
    plot(rows, broker)
    by_rate = {r["rate"]: r for r in rows}
    result = {"broker": args.broker, "relay_mode": "poll"}
    for rate, r in by_rate.items():
        result[f"achieved_per_s_{rate}"] = round(r["achieved"], 1)
        result[f"p50_ms_{rate}"] = round(r["p50"], 1)
        result[f"p99_ms_{rate}"] = round(r["p99"], 1)
    result["service_cpu_ms_per_booking"] = round(service["python_ms"], 2)
    result["service_pg_cpu_ms_per_booking"] = round(service["pg_ms"], 2)
    result["warm_up_s"] = round(args.warmed_s)
    print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
