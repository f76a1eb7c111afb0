"""`make run` under a supervisor, `timeout` or a script: a signal to make, or make's
death, stops everything it started (web, relay, consumer), nothing left running."""

import os
import signal
import subprocess
import time
import uuid

import pytest

from devtools.process import free_port, running, with_descendants
from tests.conftest import ROOT, wait_until


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now."""
    return with_descendants([pid]) - {pid}


def command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


@pytest.mark.parametrize(
    "sig, when",
    [
        (signal.SIGTERM, "running"),
        (signal.SIGKILL, "running"),
        (signal.SIGTERM, "starting"),  # during the migration, before any child
    ],
    ids=["TERM", "KILL", "TERM-while-starting"],
)
def test_make_run_stops_everything_when_make_is_signalled_or_killed(
    sig, when, broker, tmp_path
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
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "k" * 60),
        "JWT_SIGNING_KEY": os.environ.get("JWT_SIGNING_KEY", "j" * 60),
    }
    below: set[int] = set()
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

        if when == "starting":
            started = ("broker: using KAFKA_BROKERS",)
            expected = ("devrun.py", "migrate")
        else:
            started = ("relay: started", "consumer: started", "Starting development")
            expected = ("devrun.py", "runserver", "run_relay", "run_consumer")

        def seen() -> bool:
            below.update(descendants(make.pid))
            commands = " ".join(command_of(p) for p in below if running(p))
            return all(line in output() for line in started) and all(
                name in commands for name in expected
            )

        assert wait_until(seen, timeout=90, interval=0.05), output()

        os.kill(make.pid, sig)
        make.wait(timeout=30)
        assert wait_until(lambda: not any(running(p) for p in below), timeout=30), [
            command_of(p) for p in below if running(p)
        ]
        assert "[make run] stopped" in output(), output()
        if when == "starting":
            assert "stopping before everything had started" in output(), output()
            assert "relay: started" not in output(), output()
        elif sig == signal.SIGTERM:  # an orderly stop: the relay let go of its shard
            assert "relay: stopped after publishing" in output(), output()
    finally:
        for pid in {make.pid, *below, *descendants(make.pid)}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
