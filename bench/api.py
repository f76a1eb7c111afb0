"""What the transactional outbox costs the booking API.

The web app runs under gunicorn against a fresh PostgreSQL database; a second process
drives ``POST /api/appointments`` from concurrent clients for a fixed time. Each run
is done twice: as built (booking + outbox row in one transaction) and with the outbox
write switched off by the bench-only setting OUTBOX_BENCH_DISABLE=1 -- the naive
baseline a service without events would be. Runs alternate (A B B A ...) so drift on a
shared machine hits both alike. Bookings never collide: every client has its own
patient and doctor (who works every day, 00:00-23:30) and walks its own slots.

    .venv/bin/python bench/api.py            # 6 rounds of 5 s per variant
    .venv/bin/python bench/api.py --quick    # 1 round of 4 s, to try it out
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

from common import (
    BENCH_DATABASE_URL,
    ROOT,
    bench_env,
    machine,
    percentile,
    print_result,
    print_table,
    recreate_database,
    setup_django,
)

NO_BROKER = "127.0.0.1:9"  # the API never talks to Kafka; nothing needs to listen here
# Its own database, so that other bench scripts running at the same time never drop it.
DATABASE_URL = BENCH_DATABASE_URL + "_api"
SLOTS_PER_DAY = 47  # 00:00 .. 23:00 every 30 minutes, ending by 23:30


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(clients: int) -> list[dict]:
    """One patient, one always-working doctor and a token per client."""
    from datetime import time as clock

    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    from appointments.models import Doctor
    from appointments.services import doctor_set_working_hours

    User = get_user_model()
    plan = []
    for n in range(clients):
        patient = User.objects.create_user(f"bench-patient-{n}", password=None)
        doctor = Doctor.objects.create(
            user=User.objects.create_user(f"bench-doctor-{n}", password=None),
            name=f"Dr. Bench {n}",
        )
        doctor_set_working_hours(
            doctor=doctor, weekdays=range(7), start=clock(0), end=clock(23, 30)
        )
        token = AccessToken.for_user(patient)
        token.set_exp(lifetime=timedelta(hours=6))
        plan.append({"token": str(token), "doctorId": doctor.id})
    return plan


def clear_bookings() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE appointments_appointment, relay_outboxevent, audit_entry"
        )
        cursor.execute("VACUUM ANALYZE")


def counts() -> tuple[int, int]:
    from appointments.models import Appointment
    from relay.models import OutboxEvent

    return Appointment.objects.count(), OutboxEvent.objects.count()


class Gunicorn:
    """The web app under gunicorn on a free port, with the given extra environment."""

    def __init__(self, workers: int, threads: int, **env: str):
        self.port = free_port()
        self.log = open(ROOT / "var" / "bench-api-gunicorn.log", "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "healthcare.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--worker-class",
                "gthread",
                "--threads",
                str(threads),
                "--keep-alive",
                "30",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=os.environ | bench_env(NO_BROKER, DATABASE_URL=DATABASE_URL, **env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()  # never leave a half-started server behind
                raise RuntimeError(
                    "gunicorn did not start; see var/bench-api-gunicorn.log"
                )
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            conn.request("GET", "/api/schema/")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def drive(port: int, plan: list[dict], seconds: float, warmup: float) -> dict:
    """Client side (its own process): book as fast as the server answers, then report."""
    first_day = date.today() + timedelta(days=1)
    stop_at = time.monotonic() + warmup + seconds
    measure_from = time.monotonic() + warmup
    latencies: list[list[float]] = [[] for _ in plan]
    errors = [0] * len(plan)
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {plan[n]['token']}",
        }
        k = 0
        while (now := time.monotonic()) < stop_at:
            day = first_day + timedelta(days=k // SLOTS_PER_DAY)
            minutes = 30 * (k % SLOTS_PER_DAY)
            body = json.dumps(
                {
                    "doctorId": plan[n]["doctorId"],
                    "date": day.isoformat(),
                    "timeSlot": f"{minutes // 60:02d}:{minutes % 60:02d}",
                    "reason": "bench",
                }
            )
            k += 1
            started = time.perf_counter()
            try:
                conn.request("POST", "/api/appointments", body, headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status = 0
            elapsed = time.perf_counter() - started
            if now < measure_from:
                continue
            if status == 201:
                latencies[n].append(elapsed)
            else:
                errors[n] += 1
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(len(plan))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "latencies_ms": [round(x * 1000, 3) for per in latencies for x in per],
        "errors": sum(errors),
        "statuses": statuses,
        "seconds": seconds,
    }


def run_variant(label: str, plan_file: Path, args, **env: str) -> dict:
    clear_bookings()
    server = Gunicorn(args.workers, args.threads, **env)
    try:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--drive",
                "--port",
                str(server.port),
                "--plan",
                str(plan_file),
                "--seconds",
                str(args.seconds),
                "--warmup",
                str(args.warmup),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        server.stop()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    appointments, events = counts()
    result |= {"label": label, "appointments": appointments, "events": events}
    done = len(result["latencies_ms"])
    sys.stderr.write(
        f"  {label}: {done:,} bookings in {args.seconds:g} s ({done / args.seconds:,.0f}/s), "
        f"{result['errors']} errors\n"
    )
    return result


def summarize(runs: list[dict], seconds: float) -> dict:
    latencies = [x for r in runs for x in r["latencies_ms"]]
    per_run = [len(r["latencies_ms"]) / seconds for r in runs]
    return {
        "requests": len(latencies),
        "rps": len(latencies) / (seconds * len(runs)),
        "spread": f"{min(per_run):,.0f}-{max(per_run):,.0f}",
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "errors": sum(r["errors"] for r in runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="one short round, to try it out"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="measured time per run"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="unmeasured time per run"
    )
    parser.add_argument(
        "--rounds", type=int, default=6, help="runs per variant (alternating)"
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument(
        "--workers", type=int, default=3, help="gunicorn worker processes"
    )
    parser.add_argument(
        "--threads", type=int, default=4, help="threads per gunicorn worker"
    )
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.drive:
        plan = json.loads(args.plan.read_text())
        print(json.dumps(drive(args.port, plan, args.seconds, args.warmup)))
        return 0
    if args.quick:
        args.seconds, args.rounds, args.warmup = 4.0, 1, 1.0

    print(
        f"bench/api.py: POST /api/appointments, {args.clients} clients, gunicorn "
        f"{args.workers} workers x {args.threads} threads, {args.rounds} x {args.seconds:g} s "
        f"per variant; database {DATABASE_URL}; {machine()}",
        flush=True,
    )
    recreate_database(DATABASE_URL)
    setup_django(NO_BROKER, DATABASE_URL=DATABASE_URL)
    plan_file = ROOT / "var" / "bench-api-plan.json"
    plan_file.write_text(json.dumps(seed(args.clients)))

    variants = {
        "as built (outbox)": {},
        "outbox off (bench-only)": {"OUTBOX_BENCH_DISABLE": "1"},
        "audit off (bench-only)": {"AUDIT_BENCH_DISABLE": "1"},
    }
    names = list(variants)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            runs[name].append(run_variant(name, plan_file, args, **variants[name]))

    for run in runs[names[0]]:
        if run["events"] != run["appointments"]:
            print(f"!! {run['events']} events for {run['appointments']} appointments")
            return 1
    if any(r["events"] for r in runs[names[1]]):
        print("!! the outbox-off run wrote events")
        return 1

    with_outbox = summarize(runs[names[0]], args.seconds)
    without = summarize(runs[names[1]], args.seconds)
    no_audit = summarize(runs[names[2]], args.seconds)
    rows = [
        [name, s["requests"], s["rps"], s["spread"], s["p50"], s["p99"], s["errors"]]
        for name, s in zip(names, (with_outbox, without, no_audit))
    ]
    print_table(
        "POST /api/appointments (201s only; errors = any other answer)",
        ["variant", "bookings", "req/s", "req/s per run", "p50 ms", "p99 ms", "errors"],
        rows,
    )
    ratio = with_outbox["rps"] / without["rps"]
    cost = (1 - ratio) * 100
    print(
        f"\noutbox cost: {cost:.1f}% of throughput (with/without = {ratio:.3f}; target <= 10%)"
    )
    audit_cost = (1 - with_outbox["rps"] / no_audit["rps"]) * 100
    print(f"audit cost: {audit_cost:.1f}% of throughput (one insert per booking)")
    print_result(
        {
            "rps": round(with_outbox["rps"], 1),
            "rps_without_outbox": round(without["rps"], 1),
            "p99_ms": round(with_outbox["p99"], 1),
            "p99_ms_without_outbox": round(without["p99"], 1),
            "outbox_cost_pct": round(cost, 1),
            "rps_without_audit": round(no_audit["rps"], 1),
            "audit_cost_pct": round(audit_cost, 1),
            "errors": with_outbox["errors"] + without["errors"] + no_audit["errors"],
        }
    )
    errors = with_outbox["errors"] + without["errors"] + no_audit["errors"]
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
