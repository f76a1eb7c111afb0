"""The chaos suite's short run: every fault kind at least once under load, then the verdict.

``python -m devtools.chaos`` as a real process (its own database, broker, gunicorn,
relays, consumers and email sender), with a fixed seed. The broker kind comes from
``TEST_BROKER`` (``kafka`` or ``tansu``; Tansu until the Apache Kafka pass exists).
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from devtools.chaos.schedule import KINDS

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]
DURATION = 50


def chaos_database_url() -> str:
    """The suite's PostgreSQL server, a database of the chaos run's own."""
    url = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(url._replace(path=f"{url.path}_chaos"))


def test_short_chaos_run_keeps_every_invariant(tmp_path):
    env = os.environ.copy()
    env.update(
        {
            # 50 s fit the ten fault kinds (one every 3.5 s, each waiting for the last)
            "DURATION": str(DURATION),
            "SEED": "20261201",
            "BROKER": os.environ.get("TEST_BROKER", "tansu"),
            "CHAOS_DATABASE_URL": chaos_database_url(),
            "CHAOS_DIR": str(tmp_path),
        }
    )
    run = subprocess.run(
        [sys.executable, "-m", "devtools.chaos"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = run.stdout + run.stderr
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, output[-5000:]
    verdict = json.loads(lines[-1])
    assert run.returncode == 0 and verdict["ok"], output[-8000:]
    assert set(verdict["faults"]) == set(KINDS), verdict["faults"]
    # the load aims at 8 changes a second; 4 a second (as 300 in 75 s were) means it
    # kept going through the faults
    assert verdict["changes"] >= 4 * DURATION, verdict
    assert verdict["events"] == verdict["changes"], verdict
    assert all(v["ok"] for v in verdict["invariants"].values())
