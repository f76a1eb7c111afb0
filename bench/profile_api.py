"""Where one POST /api/appointments spends its CPU: cProfile over a WSGI call loop.

The whole Django stack as gunicorn runs it (middleware, DRF, authentication, the
throttle, the serializers, the booking service, psycopg), called in this process
with a prepared WSGI environ: gunicorn's own HTTP handling is not in it (bench/api.py
measures that, with the rest). First the CPU per booking without the profiler
(``time.process_time``), then the same loop under cProfile with a CPU-time clock, so
that time spent waiting for PostgreSQL is not counted. cProfile inflates Python
calls: the breakdown is scaled to the unprofiled figure (the ms column) and given as
a share of the whole. Stages are inclusive (a stage contains those under it).

    .venv/bin/python bench/profile_api.py              # 2,000 bookings each way
    .venv/bin/python bench/profile_api.py -n 500       # quicker
    .venv/bin/python bench/profile_api.py --top 30     # and the top functions
"""

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from datetime import date, timedelta

from api import NO_BROKER, seed
from common import BENCH_DATABASE_URL, machine, recreate_database, setup_django
from loadgen import booking_bodies

from devtools.process import cpu_seconds as process_cpu_seconds

DATABASE_URL = BENCH_DATABASE_URL + "_apiprof"

# (label, file suffix, function name): inclusive CPU per booking of each.
STAGES = [
    ("whole request (WSGI handler)", "django/core/handlers/wsgi.py", "__call__"),
    ("  DRF view dispatch", "rest_framework/views.py", "dispatch"),
    ("    authentication (JWT + user)", "rest_framework/request.py", "_authenticate"),
    ("      JWT decode + verify", "rest_framework_simplejwt/tokens.py", "__init__"),
    ("      user fetch", "rest_framework_simplejwt/authentication.py", "get_user"),
    ("", "core/tokens.py", "get_user"),
    ("    throttle", "rest_framework/views.py", "check_throttles"),
    (
        "    content negotiation",
        "rest_framework/views.py",
        "perform_content_negotiation",
    ),
    ("    view post()", "appointments/api.py", "post"),
    ("      body parse (request.data)", "rest_framework/request.py", "_parse"),
    ("      input is_valid()", "rest_framework/serializers.py", "is_valid"),
    ("", "core/api.py", "validated"),
    ("        doctor + hours query", "appointments/models.py", "get_with_hours"),
    ("      booking service", "appointments/services.py", "appointment_book"),
    ("        check_bookable", "appointments/rules.py", "check_bookable"),
    ("        lock_patient (quota)", "appointments/rules.py", "lock_patient"),
    ("        check_free (conflicts)", "appointments/rules.py", "check_free"),
    ("        outbox enqueue", "relay/events.py", "enqueue"),
    ("        audit_change", "audit/trail.py", "audit_change"),
    ("      output serializer .data", "rest_framework/serializers.py", "data"),
    ("", "core/api.py", "represented"),
    ("    finalize_response", "rest_framework/views.py", "finalize_response"),
    ("  JSON rendering", "rest_framework/response.py", "rendered_content"),
    ("  access log line", "logging/__init__.py", "log"),
    ("  prometheus labels/inc/observe", "prometheus_client/metrics.py", "labels"),
    ("", "prometheus_client/metrics.py", "inc"),
    ("", "prometheus_client/metrics.py", "observe"),
    ("  response headers/bytes (WSGI)", "django/core/handlers/wsgi.py", "__iter__"),
]
# Across all stages: the database calls and what builds them.
LAYERS = [
    (
        "SQL execute (Django wrapper + psycopg)",
        "django/db/backends/utils.py",
        "execute",
    ),
    ("  psycopg cursor.execute", "psycopg/cursor.py", "execute"),
    ("ORM query compilation (as_sql)", "django/db/models/sql/compiler.py", "as_sql"),
    ("model save()", "django/db/models/base.py", "save"),
    ("transaction.atomic enter", "django/db/transaction.py", "__enter__"),
    ("transaction.atomic exit (COMMIT)", "django/db/transaction.py", "__exit__"),
]


def environ(token: str, body: str) -> dict:
    payload = body.encode()
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/appointments",
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(payload)),
        "wsgi.input": io.BytesIO(payload),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def book_all(application, requests) -> None:
    status = []
    for token, body in requests:
        status.clear()
        result = application(environ(token, body), lambda s, h: status.append(s))
        b"".join(result)
        result.close()
        if not status[0].startswith("201"):
            raise RuntimeError(f"a booking answered {status[0]}")


def backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def cpu_per_booking(application, requests, chunks: int = 4) -> dict:
    """CPU ms per booking without the profiler: this process's (the least of a few
    chunks: other load only adds) and its PostgreSQL backend's; and wall ms."""
    pid, size = backend_pid(), max(1, len(requests) // chunks)
    pg, wall = process_cpu_seconds(pid), time.perf_counter()
    web = []
    for start in range(0, len(requests), size):
        chunk = requests[start : start + size]
        cpu = time.process_time()
        book_all(application, chunk)
        web.append((time.process_time() - cpu) / len(chunk) * 1000)
    n = len(requests)
    pg = process_cpu_seconds(pid) - pg if backend_pid() == pid else float("nan")
    return {
        "web": min(web),
        "pg": pg / n * 1000,
        "wall": (time.perf_counter() - wall) / n * 1000,
    }


def profiled(application, requests) -> pstats.Stats:
    profile = cProfile.Profile(time.process_time)
    profile.runcall(book_all, application, requests)
    return pstats.Stats(profile)


def inclusive(stats: pstats.Stats, suffix: str, name: str) -> float:
    """Seconds inside functions ``name`` of files ending ``suffix`` (not recursive)."""
    total = 0.0
    for (path, _, func), (*_, callers) in stats.stats.items():
        if func != name or not path.endswith(suffix):
            continue
        # a call from another function of the same name and file is counted there
        total += sum(
            c[3]
            for (cpath, _, cfunc), c in callers.items()
            if not (cfunc == name and cpath.endswith(suffix))
        )
    return total


def breakdown(stats: pstats.Stats, rows, n: int, scale: float) -> list[list]:
    whole = inclusive(stats, *STAGES[0][1:])
    out = []
    for label, suffix, name in rows:
        seconds = inclusive(stats, suffix, name)
        if not label and out:  # the row above, by another name (before/after)
            out[-1][1] += seconds / n * 1000 * scale
            out[-1][2] += seconds / whole * 100
            continue
        out.append([label, seconds / n * 1000 * scale, seconds / whole * 100])
    return out


def print_rows(title: str, rows) -> None:
    print(f"\n{title}")
    print(f"  {'':44} {'ms/booking':>10} {'share':>7}")
    for label, ms, share in rows:
        print(f"  {label:44} {ms:10.2f} {share:6.1f}%")


def top_functions(stats: pstats.Stats, count: int) -> None:
    out = io.StringIO()
    stats.stream = out
    stats.sort_stats("tottime").print_stats(count)
    print("\n" + out.getvalue().split("\n\n", 2)[-1].rstrip())


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="bookings per loop")
    parser.add_argument("--top", type=int, default=0, help="also list N functions")
    parser.add_argument("--clients", type=int, default=16, help="patients/doctors")
    parser.add_argument("--save", help="also write the profile here (pstats)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    recreate_database(DATABASE_URL)
    # one connection throughout, so that its backend's CPU can be read
    setup_django(NO_BROKER, DATABASE_URL=DATABASE_URL, DATABASE_CONN_MAX_AGE="86400")
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
    plan = seed(args.clients)
    first = date.today() + timedelta(days=1)
    warm, plain, under = (
        booking_bodies(plan, first, offset, count)
        for offset, count in ((0, 200), (40, args.n), (200, args.n))
    )
    print(
        f"bench/profile_api.py: POST /api/appointments in-process (WSGI), "
        f"{args.n} bookings each way; database {DATABASE_URL}; {machine()}",
        flush=True,
    )
    book_all(application, warm)
    plain_cpu = cpu_per_booking(application, plain)
    cpu_ms, wall_ms = plain_cpu["web"], plain_cpu["wall"]
    stats = profiled(application, under)
    whole = inclusive(stats, *STAGES[0][1:]) / args.n * 1000
    scale = cpu_ms / whole
    print(
        f"\nwithout the profiler: {cpu_ms:.2f} ms CPU here and"
        f" {plain_cpu['pg']:.2f} ms in PostgreSQL, {wall_ms:.2f} ms wall per booking"
        f" ({1000 / wall_ms:,.0f} bookings/s in one thread);"
        f" under cProfile {whole:.2f} ms CPU (ms columns scaled by {scale:.2f})"
    )
    stages = breakdown(stats, STAGES, args.n, scale)
    outside = stages[0][1] - stages[1][1]
    stages.insert(
        1, ["  outside DRF (middleware, Django)", outside, outside / cpu_ms * 100]
    )
    print_rows("stages (inclusive)", stages)
    print_rows("layers (across stages)", breakdown(stats, LAYERS, args.n, scale))
    if args.save:
        stats.dump_stats(args.save)
    if args.top:
        top_functions(stats, args.top)
    print(
        json.dumps(
            {
                "bench": "profile_api",
                "cpu_ms_per_booking": round(cpu_ms, 2),
                "pg_cpu_ms_per_booking": round(plain_cpu["pg"], 2),
                "wall_ms_per_booking": round(wall_ms, 2),
                "profiled_cpu_ms_per_booking": round(whole, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
