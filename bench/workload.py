"""Pieces a bench can share: manage.py processes, who owns what by their logs, CPU use
by process kind over a window, and a topic loaded in one Kafka transaction.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.request import urlopen

from common import ROOT, progress

from devtools.process import Process, cpu_seconds, free_port, port_open


# -- processes -------------------------------------------------------------------
def start_manage(
    name: str, args: list[str], env: dict, log_path: Path, ready_text: str = ""
) -> Process:
    """``manage.py <args>`` with its log started afresh; waits for ``ready_text``."""
    log_path.unlink(missing_ok=True)
    process = Process(
        name, [sys.executable, "manage.py", *args], log_path=log_path, env=env, cwd=ROOT
    )
    ready = (lambda: process.log_contains(ready_text)) if ready_text else None
    return process.start(ready=ready, timeout=60)


def stop_all(processes: list[Process], grace: float = 20) -> list[int | None]:
    """SIGTERM them all at once (one each: a second may cut a clean exit short),
    then wait for each, killed after ``grace`` seconds; their exit codes."""
    for process in processes:
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    codes = []
    for process in processes:
        try:
            codes.append(process.proc.wait(max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.proc.returncode)
    return codes


# -- who owns what, from the processes' own metrics ---------------------------------------
@dataclass
class Served:
    """A manage.py process that serves its Prometheus metrics on ``port``."""

    process: Process
    port: int

    def gauge(self, metric: str, where=lambda value: True) -> list[dict]:
        """The label sets of the gauge's samples whose value passes ``where``."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.port}/metrics"
        with urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name == metric:
                return [s.labels for s in family.samples if where(s.value)]
        return []


def start_served(
    name: str, args: list[str], env: dict, log_path: Path, ready_text: str = ""
) -> Served:
    """``manage.py <args> --metrics-port <a free port>``, once its metrics answer."""
    port = free_port()
    process = start_manage(name, [*args, "--metrics-port", str(port)], env, log_path)
    process.wait_ready(
        lambda: (
            port_open(port) and (not ready_text or process.log_contains(ready_text))
        ),
        timeout=60,
    )
    served = Served(process, port)
    return served


def divided(shares: list[set[str]], items: set[str]) -> bool:
    """Every item owned by exactly one member, none above its fair share (ceil)."""
    union = set().union(*shares)
    fair = math.ceil(len(items) / max(1, len(shares)))
    return (
        union == items
        and sum(map(len, shares)) == len(union)
        and all(len(share) <= fair for share in shares)
    )


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> float:
    """Poll ``check`` every 0.2 s; the seconds it took, TimeoutError after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


# -- CPU by process kind -------------------------------------------------------------
def postgres_pids() -> list[int]:
    """Every process named postgres on this machine (backends and background)."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/comm") as f:
                    if f.read().strip() == "postgres":
                        pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent on anything but idle and iowait, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuByKind:
    """CPU % of one core used by each kind of process while the block runs.

    ``kinds`` maps a name ("relay", "broker", "postgres") to a function giving the
    pids of that kind; processes that start during the block count whole, those
    that end during it are missed. ``percent["machine"]`` is the whole machine
    (up to 100 x cores).
    """

    def __init__(self, kinds: dict[str, Callable[[], Iterable[int]]]):
        self.kinds = kinds
        self.percent: dict[str, float] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        return {
            kind: {pid: cpu_seconds(pid) for pid in pids()}
            for kind, pids in self.kinds.items()
        }

    def __enter__(self) -> "CpuByKind":
        self._before = self._sample()
        self._busy = machine_busy_seconds()
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        wall = max(time.monotonic() - self._started, 1e-9)
        after = self._sample()
        for kind, cpu in after.items():
            before = self._before[kind]
            used = sum(t - before.get(pid, 0.0) for pid, t in cpu.items())
            self.percent[kind] = used / wall * 100
        self.percent["machine"] = (machine_busy_seconds() - self._busy) / wall * 100


# -- a topic loaded in one transaction --------------------------------------------------
def booked_record(i: int, patients: list[int], doctors: list[int]) -> tuple:
    """(key, value, headers) of an appointment.booked event as the relay publishes it."""
    appointment = str(uuid.uuid4())
    data = {
        "appointmentId": appointment,
        "patientId": patients[i % len(patients)],
        "doctorId": 1 + i % len(doctors),
        "doctorUserId": doctors[i % len(doctors)],
        "doctorName": "Dr. Bench",
        "date": "2030-05-06",
        "timeSlot": f"{9 + i % 8:02d}:{30 * (i % 2):02d}",
        "reason": "Check-up",
        "status": "booked",
    }
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"/healthcare/appointments"),
        ("ce_type", b"appointment.booked"),
        ("ce_time", datetime.now(UTC).isoformat().encode()),
        ("ce_subject", appointment.encode()),
        ("content-type", b"application/json"),
    ]
    return appointment.encode(), json.dumps(data).encode(), headers


def produce_in_one_transaction(
    brokers: str, topic: str, records: list[tuple], label: str = "loading"
) -> float:
    """Produce (key, value, headers) records in one transaction; the commit time.

    read_committed consumers see none of them until the commit, then all at once:
    the time from commit to the last one applied is a drain, as for the relay.
    """
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": brokers,
            "transactional.id": f"bench-load-{uuid.uuid4()}",
            "linger.ms": 20,
            "compression.type": "lz4",
            "transaction.timeout.ms": 300_000,
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    started = time.monotonic()
    for i, (key, value, headers) in enumerate(records):
        while True:
            try:
                producer.produce(topic, value, key, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if (i + 1) % 10_000 == 0 or i + 1 == len(records):
            progress(label, i + 1, len(records), started)
    producer.commit_transaction(120)
    return time.time()
