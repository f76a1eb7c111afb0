"""End to end through Debezium beside the polling relay, in one run, on Apache Kafka.

The same measurement as bench/e2e.py (booking commit -> committed notification,
at 100, 500 and 1,000/s), twice on one Apache Kafka broker and one database:
first with ``run_relay`` publishing, then with run_relay stopped and Debezium's
outbox event router (a standalone Kafka Connect worker) publishing from the WAL.
Each path gets its own topic and consumer group. Prints one table with both
paths and, last, one JSON line.

    BENCH_DATABASE_URL=... .venv/bin/python bench/e2e_cdc.py [--quick] [--seconds S]
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import e2e
from common import (
    bench_env,
    machine,
    print_result,
    print_table,
    recreate_database,
    setup_django,
)

from devtools.connect import ConnectWorker
from devtools.kafka import KafkaBroker

RATES = e2e.RATES


def topics(path: str) -> dict:
    topic = f"appointments-e2e-{path}"
    return {
        "OUTBOX_APPOINTMENT_TOPIC": topic,
        "CONSUMER_TOPICS": topic,
        "CONSUMER_DLQ_TOPIC": f"{topic}.dlq",
        "CONSUMER_GROUP": f"e2e-{path}",
        "OUTBOX_POLL_INTERVAL_MS": "100",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
    }


def use_path(path: str, address: str) -> dict:
    """Point this process's settings and the children's environment at one path."""
    from django.conf import settings

    names = topics(path)
    settings.OUTBOX["TOPICS"]["appointment"] = names["OUTBOX_APPOINTMENT_TOPIC"]
    env = os.environ.copy()
    env.update(bench_env(address, **names))
    subprocess.run(
        [sys.executable, "manage.py", "kafka", "topics", "create"],
        cwd=e2e.ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return env


def measure(procs, seconds, slots, patients) -> list[dict]:
    warm = e2e.run_rate(20, 3, slots, patients)
    if warm["missing"]:
        raise RuntimeError(f"warm-up: {warm['missing']} notifications never appeared")
    return [e2e.run_rate(rate, seconds, slots, patients) for rate in RATES]


def run_both(broker, work: Path, seconds: float) -> dict:
    setup_django(broker.address, **topics("poll"))
    from relay import cdc

    doctors, patients = e2e.make_people()
    slots = e2e.free_slots(doctors, patients)
    env = use_path("poll", broker.address)
    procs = [e2e.start(["run_relay"], env), e2e.start(["run_consumer"], env)]
    try:
        results = {"poll": measure(procs, seconds, slots, patients)}
    finally:
        e2e.stop(procs)
    env = use_path("cdc", broker.address) | {"OUTBOX_RELAY": "cdc"}
    cdc.cdc_setup()
    worker = ConnectWorker(work / "connect", broker.address).start()
    procs = [e2e.start(["run_consumer"], env)]
    try:
        cdc.connector_register(worker.url)
        worker.wait_running(cdc.settings.CDC["CONNECTOR_NAME"])
        results["cdc"] = measure(procs, seconds, slots, patients)
        results["connect_start_s"] = worker.started_in
        results["connect_rss_mb"] = worker.rss_mb()
    finally:
        e2e.stop(procs)
        worker.stop()
        cdc.cdc_teardown()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="per rate")
    parser.add_argument("--quick", action="store_true", help="3 seconds per rate")
    args = parser.parse_args()
    seconds = 3 if args.quick else args.seconds
    recreate_database()
    work = Path(tempfile.mkdtemp(prefix="bench-cdc-"))
    broker = KafkaBroker(data_dir=work / "kafka", sasl=False).start()
    try:
        results = run_both(broker, work, seconds)
    finally:
        broker.stop()
    headers = ["relay", "target/s", "booked", "achieved/s", "p50 ms", "p99 ms"]
    rows = [
        [path, r["rate"], r["booked"], r["achieved"], r["p50"], r["p99"]]
        for path in ("poll", "cdc")
        for r in results[path]
    ]
    print_table(
        f"Commit -> committed notification, run_relay vs Debezium ({machine()}; "
        f"PostgreSQL; Apache Kafka 4.3.0; {seconds:g} s per rate)",
        headers,
        rows,
    )
    print(
        f"  Connect worker: REST up in {results['connect_start_s']:.1f} s, "
        f"{results['connect_rss_mb']:.0f} MB resident while relaying"
    )
    print_result(
        {
            f"{path}_{q}_ms_{r['rate']}": round(r[q], 1)
            for path in ("poll", "cdc")
            for r in results[path]
            for q in ("p50", "p99")
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
