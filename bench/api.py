"""What booking costs, and what the transactional outbox adds to it.

The web app runs under gunicorn with the deploy config (deploy/gunicorn.conf.py)
against a fresh PostgreSQL database. Load comes from a native generator: wrk (Debian's
package, installed when missing) with a generated Lua script, so that every request
books a distinct free slot, at a fixed number of connections (closed loop); then an
open-loop driver offers a fixed rate (default 300/s) and measures each request's
latency from its scheduled time. Each variant runs in every round, alternating
(A B B A ...): as built (booking + outbox row in one transaction) and the naive
baseline without the outbox write (bench-only settings that no deployment can reach).
It reports requests/s, p50/p99, CPU time per request of the web workers and of
PostgreSQL, and the SQL statements one booking runs (counted in-process, printed).

    .venv/bin/python bench/api.py            # 3 rounds of 8 s per variant
    .venv/bin/python bench/api.py --quick    # 1 round of 4 s, to try it out
"""

import argparse
import http.client
import os
import sys
from datetime import date, timedelta
from pathlib import Path

from common import (
    BENCH_DATABASE_URL,
    ROOT,
    bench_env,
    machine,
    print_result,
    print_table,
    recreate_database,
    setup_django,
)
from loadgen import booking_bodies, run_open_loop, run_wrk, write_wrk_script

from devtools.process import Process, free_port
from devtools.process import cpu_seconds as process_cpu_seconds

NO_BROKER = "127.0.0.1:9"  # the API never talks to Kafka; nothing needs to listen here
# Its own database, so that other bench scripts running at the same time never drop it.
DATABASE_URL = BENCH_DATABASE_URL + "_api"
# The naive baseline: the same API with no outbox write, by bench-only settings
# (bench/settings_baseline.py and its URL conf) that no deployment can reach.
BASELINE = {"DJANGO_SETTINGS_MODULE": "bench.settings_baseline"}
# The audit trail's cost: the same API without its audit insert (bench-only too).
NO_AUDIT = {"DJANGO_SETTINGS_MODULE": "bench.settings_no_audit"}


def seed(clients: int) -> list[dict]:
    """One patient, one always-working doctor and a token per client (minted here)."""
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
        cursor.execute("TRUNCATE appointments_appointment, relay_outboxevent")
        cursor.execute("VACUUM ANALYZE")


def counts() -> tuple[int, int]:
    from appointments.models import Appointment
    from relay.models import OutboxEvent

    return Appointment.objects.count(), OutboxEvent.objects.count()


def statements_per_booking(plan: list[dict]) -> list[str]:
    """The SQL one booking runs, through the whole Django stack in this process."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    ((token, body),) = booking_bodies(
        plan[:1], date.today() + timedelta(days=1), 350, 1
    )
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="127.0.0.1")
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            "/api/appointments", body, content_type="application/json"
        )
    if response.status_code != 201:
        raise RuntimeError(f"the counted booking answered {response.status_code}")
    clear_bookings()
    return [q["sql"] for q in queries.captured_queries]


def cpu_seconds(pids) -> float:
    return sum(process_cpu_seconds(pid) for pid in pids)


def processes(*, parent: int | None = None, name: str | None = None) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        comm, ppid = head.split("(", 1)[1], int(rest.split()[1])
        if (parent is None or ppid == parent) and (name is None or comm == name):
            found.append(int(entry))
    return found


class Gunicorn:
    """The web app under gunicorn with the deploy config, on a free port."""

    def __init__(self, workers: int, threads: int, **env: str):
        self.port = free_port()
        argv = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"]
        argv += ["--log-level", "warning", "healthcare.wsgi:application"]
        env = os.environ | bench_env(NO_BROKER, DATABASE_URL=DATABASE_URL, **env)
        env |= {
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_THREADS": str(threads),
        }
        log = ROOT / "var" / "bench-api-gunicorn.log"
        self.process = Process("gunicorn", argv, log_path=log, env=env, cwd=ROOT)
        # stopped if it is not ready: never a half-started server left behind
        self.process.start(ready=self._answers, timeout=30)

    def _answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def workers(self) -> list[int]:
        return processes(parent=self.process.pid)

    def stop(self) -> None:
        self.process.stop(grace=15)


def measured(server: Gunicorn, run) -> dict:
    """Run a load and add the CPU seconds per request of gunicorn and PostgreSQL."""
    web_before = cpu_seconds(server.workers())
    pg_before = cpu_seconds(processes(name="postgres"))
    result = run()
    web = cpu_seconds(server.workers()) - web_before
    pg = cpu_seconds(processes(name="postgres")) - pg_before
    done = max(1, result["requests"])
    return result | {"web_cpu_ms": web / done * 1000, "pg_cpu_ms": pg / done * 1000}


def run_variant(label: str, plan: list[dict], script: Path, args, env) -> dict:
    clear_bookings()
    first = date.today() + timedelta(days=1)
    server = Gunicorn(args.workers, args.threads, **env)
    try:
        wrk = dict(port=server.port, script=script, threads=2, connections=args.clients)
        run_wrk(**wrk, seconds=args.warmup, day_offset=0)
        closed = measured(
            server, lambda: run_wrk(**wrk, seconds=args.seconds, day_offset=60)
        )
        bodies = booking_bodies(plan, first, 200, int(args.rate * args.seconds))
        opened = measured(server, lambda: run_open_loop(server.port, bodies, args.rate))
    finally:
        server.stop()
    appointments, events = counts()
    sys.stderr.write(
        f"  {label}: {closed['rps']:,.0f} req/s closed loop (p99 {closed['p99_ms']:.1f} ms); "
        f"{opened['rps']:,.0f}/s of {args.rate:g}/s offered (p99 {opened['p99_ms']:.1f} ms); "
        f"{closed['errors'] + opened['errors']} errors\n"
    )
    return {
        "closed": closed,
        "open": opened,
        "appointments": appointments,
        "events": events,
    }


def mean(runs, part, key):
    return sum(r[part][key] for r in runs) / len(runs)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="measured time per load"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="unmeasured wrk run first"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs per variant")
    parser.add_argument("--clients", type=int, default=16, help="wrk connections")
    parser.add_argument(
        "--rate", type=float, default=300.0, help="open-loop offered rate"
    )
    parser.add_argument(
        "--workers", type=int, default=4, help="gunicorn worker processes"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="threads per gunicorn worker"
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.warmup = 4.0, 1, 1.0
    return args


def report(runs: dict, statements: list[str], args) -> int:
    names = list(runs)
    rows = []
    for name in names:
        r = runs[name]
        rows.append(
            [
                name,
                mean(r, "closed", "rps"),
                mean(r, "closed", "p50_ms"),
                mean(r, "closed", "p99_ms"),
                mean(r, "closed", "web_cpu_ms"),
                mean(r, "closed", "pg_cpu_ms"),
                mean(r, "open", "rps"),
                mean(r, "open", "p99_ms"),
                sum(x["closed"]["errors"] + x["open"]["errors"] for x in r),
            ]
        )
    print_table(
        f"POST /api/appointments: {args.clients} connections (wrk), then {args.rate:g}/s offered",
        [
            "variant",
            "req/s",
            "p50 ms",
            "p99 ms",
            "web CPU ms/req",
            "PG CPU ms/req",
            f"achieved at {args.rate:g}/s",
            f"p99 ms at {args.rate:g}/s",
            "errors",
        ],
        rows,
    )
    own = [s for s in statements if s not in ("BEGIN", "COMMIT")]
    print(f"\nSQL per booking: {len(own)} statements besides BEGIN/COMMIT")
    for sql in statements:
        print(f"  {sql[:110]}")
    built, baseline, no_audit = rows
    cost = (1 - built[1] / baseline[1]) * 100
    audit_cost = (1 - built[1] / no_audit[1]) * 100
    print(f"\noutbox cost: {cost:.1f}% of throughput (target <= 5%)")
    print(f"audit cost: {audit_cost:.1f}% of throughput (one insert per booking)")
    errors = built[-1] + baseline[-1] + no_audit[-1]
    print_result(
        {
            "bench": "api",
            "broker": "none",
            "relay_mode": "none",
            "api_req_per_s": round(built[1], 1),
            "api_p99_ms": round(built[3], 1),
            "api_p99_ms_at_300": round(built[7], 1),
            "api_baseline_req_per_s": round(baseline[1], 1),
            "outbox_cost_pct": round(cost, 1),
            "statements_per_booking": len(own),
            "api_no_audit_req_per_s": round(no_audit[1], 1),
            "audit_cost_pct": round(audit_cost, 1),
            "web_cpu_ms_per_req": round(built[4], 2),
            "pg_cpu_ms_per_req": round(built[5], 2),
            "errors": errors,
        }
    )
    return 0 if errors == 0 else 1


def main() -> int:
    args = parse_args()
    print(
        f"bench/api.py: POST /api/appointments, gunicorn {args.workers} workers x "
        f"{args.threads} threads (deploy config), {args.rounds} x {args.seconds:g} s per "
        f"variant; tokens minted in-process; database {DATABASE_URL}; {machine()}",
        flush=True,
    )
    recreate_database(DATABASE_URL)
    setup_django(NO_BROKER, DATABASE_URL=DATABASE_URL)
    plan = seed(args.clients)
    statements = statements_per_booking(plan)
    script = ROOT / "var" / "bench-api-wrk.lua"
    write_wrk_script(script, plan, threads=2, first=date.today() + timedelta(days=1))
    variants = {
        "as built (outbox + audit)": {},
        "no outbox (bench-only)": BASELINE,
        "no audit (bench-only)": NO_AUDIT,
    }
    names = list(variants)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            runs[name].append(run_variant(name, plan, script, args, variants[name]))
    if any(r["events"] != r["appointments"] for r in runs[names[0]] + runs[names[2]]):
        print("!! the outbox run has a booking without its event")
        return 1
    if any(r["events"] for r in runs[names[1]]):
        print("!! the baseline wrote events")
        return 1
    return report(runs, statements, args)


if __name__ == "__main__":
    sys.exit(main())
