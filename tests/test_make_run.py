"""`make run` under a supervisor, `timeout` or a script: a signal to make, or make's
death, stops everything it started (web, relay, consumer), nothing left running."""

import os
import signal
import subprocess
import time
import uuid

import pytest

from devtools.process import free_port
from tests.conftest import ROOT, wait_until


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_make_run_stops_everything_when_make_is_signalled_or_killed(
    sig, broker, tmp_path
):
    topic = f"make-run-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "make-run.log"
    env = os.environ | {
        "WEB_ADDRESS": f"127.0.0.1:{free_port()}",
        "KAFKA_BROKERS": broker.address,  # a broker that runs: make run starts none
        "DATABASE_URL": f"sqlite:///{tmp_path / 'run.sqlite3'}",
        "OUTBOX_APPOINTMENT_TOPIC": topic,
        "CONSUMER_TOPICS": topic,
        "CONSUMER_DLQ_TOPIC": f"{topic}.dlq",
        "CONSUMER_GROUP": f"group-{topic}",
        "DEMO_MODE": "0",
    }
    with open(log_path, "wb") as log:
        make = subprocess.Popen(
            ["make", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # no terminal: only the signal below reaches it
        )
    try:

        def output() -> str:
            return log_path.read_text(errors="replace")

        started = ("relay: started", "consumer: started", "Starting development server")
        assert wait_until(
            lambda: all(line in output() for line in started), timeout=90
        ), output()
        below = descendants(make.pid)
        commands = [command_of(p) for p in below]
        for name in ("devrun.py", "runserver", "run_relay", "run_consumer"):
            assert any(name in c for c in commands), (name, commands)

        os.kill(make.pid, sig)
        make.wait(timeout=30)
        assert wait_until(lambda: not any(running(p) for p in below), timeout=30), [
            command_of(p) for p in below if running(p)
        ]
        assert "[make run] stopped" in output(), output()
        if sig == signal.SIGTERM:  # an orderly stop: the relay let go of its shard
            assert "relay: stopped after publishing" in output(), output()
    finally:
        for pid in [make.pid, *descendants(make.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
