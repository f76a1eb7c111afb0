"""Shared plumbing for bench/ scripts: a broker, a migrated PostgreSQL database, tables.

Each bench script starts its own broker (``--broker kafka|tansu``, default
BENCH_BROKER, else Apache Kafka when Java and its jars are here; the launchers
are in devtools/) on a free port, stops it in a
``finally`` whatever fails after, and uses a dedicated
PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/healthcare_bench), migrated fresh, as the tests do.
"""

import json
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.brokers import client_env
from devtools.process import rss_mb

_started_kind: str | None = None  # the broker kind start_broker started last

BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/healthcare_bench"
)


def bench_env(broker_address: str, **extra: str) -> dict:
    """Environment for Django (in this process or a child) during a benchmark.

    Client settings suit the broker that ``start_broker`` started last
    (devtools.brokers.client_env).
    """
    env = {
        "DATABASE_URL": BENCH_DATABASE_URL,
        "KAFKA_BROKERS": broker_address,
        "DJANGO_SECRET_KEY": "bench-secret-key-that-is-long-enough-for-hs256-and-django",
        "JWT_SIGNING_KEY": "bench-jwt-signing-key-of-fifty-characters-or-more-for-hs256",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "LOG_LEVEL": "WARNING",
        # production settings (DEBUG off) over plain HTTP on loopback
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        # a bench books far more, and faster, than any patient may
        "BOOKING_THROTTLE_RATE": "1000000000/second",
        "AUTH_THROTTLE_RATE": "1000000000/second",
        "MAX_ACTIVE_APPOINTMENTS_PER_PATIENT": "1000000000",
    }
    env.update(client_env(_started_kind or default_broker()))
    env.update(extra)
    return env


def recreate_database(url: str = BENCH_DATABASE_URL) -> None:
    """Drop and create the bench database so every run starts empty."""
    from devtools.postgres import recreate_database as recreate

    recreate(url)


def setup_django(broker_address: str, **extra: str) -> None:
    """Point Django at the bench database and broker, then migrate quietly."""
    os.environ.update(bench_env(broker_address, **extra))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcare.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def kafka_can_start() -> bool:
    """Java is here, and Maven too unless the Kafka jars are cached already."""
    from devtools import kafka_jars

    missing = kafka_jars.missing_tools()
    return "java" not in missing and ("mvn" not in missing or kafka_jars.cached())


def default_broker() -> str:
    """BENCH_BROKER, else Apache Kafka when it can start here, else Tansu."""
    return os.environ.get("BENCH_BROKER") or ("kafka" if kafka_can_start() else "tansu")


def add_broker_argument(parser) -> None:
    parser.add_argument(
        "--broker",
        choices=("kafka", "tansu"),
        default=default_broker(),
        help="the broker to start (default: kafka when it can start here)",
    )


def start_broker(kind: str | None = None):
    """A fresh broker process on a free port (the caller stops it in ``finally``).

    ``kind`` is "tansu" or "kafka" (default: ``default_broker()``).
    """
    from devtools.brokers import launcher

    global _started_kind
    _started_kind = kind or default_broker()
    return launcher(_started_kind).start()


def progress(label: str, done: int, total: int, started: float) -> None:
    """One self-overwriting progress line on stderr."""
    rate = done / max(time.monotonic() - started, 1e-9)
    sys.stderr.write(f"\r  {label}: {done:,}/{total:,} ({rate:,.0f}/s)   ")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def print_table(title: str, headers: list[str], rows: list[list]) -> None:
    """The title, then the table indented: numbers right, a rule under headers."""
    from core.tables import render_table

    table = render_table(headers, rows, numbers_right=True, rule=True)
    print(f"\n{title}\n" + textwrap.indent(table, "  "))


def print_result(result: dict) -> None:
    """The machine-readable last line of every bench script."""
    print(json.dumps(result), flush=True)


class PeakRss:
    """Sample a process's resident memory (MB) from /proc while a block runs."""

    def __init__(self, pid: int | None = None, interval: float = 0.05):
        self.pid = pid or os.getpid()
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb(self.pid))
            time.sleep(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb(self.pid))


def machine() -> str:
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpus} cores, {mem:.0f} GiB, Python {sys.version.split()[0]}"
