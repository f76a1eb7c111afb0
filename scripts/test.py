"""`make test`: the matrix, PostgreSQL + Apache Kafka and SQLite + Tansu.

PostgreSQL: TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/healthcare.
The broker reaches the tests as TEST_BROKER (kafka or tansu; the PostgreSQL pass
takes TEST_BROKER from the environment when set). The SQLite pass leaves out the
tests marked postgres_only; a Tansu pass leaves out those marked kafka_only.

Under CI=true a missing PostgreSQL, Java, Maven or Kafka is a failure naming it.
Outside CI the PostgreSQL pass falls back (to SQLite only, or to Tansu) and says
so in one line. Each pass prints a header naming database and broker, and a last
line with its counts. Extra arguments go to pytest.

The two passes run side by side: the SQLite pass waits on its broker and its
processes about half of its time, and on two cores the pair takes about the time
of the PostgreSQL pass alone. Its output is kept in a file and printed, whole,
after the PostgreSQL pass. TEST_SERIAL=1 runs them one after the other (needed for
``--pdb`` or ``-s``: the pass run beside gets no terminal). Each pass keeps its
temporary files (process and broker logs) in var/test-tmp/<database>/ until the
next run.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools import kafka_jars  # noqa: E402
from devtools.process import death_signal  # noqa: E402

PG_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/healthcare"
)
SQLITE_URL = "sqlite:///var/healthcare-test.sqlite3"
TEST_TMP = ROOT / "var" / "test-tmp"  # each pass's --basetemp, kept until the next run
IN_CI = os.environ.get("CI") == "true"
BROKER_LABELS = {"kafka": f"Apache Kafka {kafka_jars.KAFKA_VERSION}", "tansu": "Tansu"}


class Missing(Exception):
    """A part of the matrix is not here (fatal under CI)."""


def reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        address = (parsed.hostname, parsed.port or 5432)
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


def kafka_ready() -> None:
    """Raise Missing unless Apache Kafka can start here (its jars resolved now)."""
    tools = kafka_jars.missing_tools()
    if "java" in tools or ("mvn" in tools and not kafka_jars.cached()):
        raise Missing(f"Apache Kafka needs {' and '.join(tools)}, missing here")
    try:
        kafka_jars.libs_dir()
    except kafka_jars.KafkaUnavailable as exc:
        raise Missing(str(exc)) from exc


def postgres_broker() -> str:
    """The broker of the PostgreSQL pass: Apache Kafka, or Tansu outside CI."""
    wanted = os.environ.get("TEST_BROKER", "kafka")
    if wanted != "kafka":
        return wanted
    try:
        kafka_ready()
    except Missing as exc:
        if IN_CI:
            raise
        print(f"{exc}: the PostgreSQL pass runs on Tansu (outside CI)", flush=True)
        return "tansu"
    return "kafka"


def counts(junit: Path) -> tuple[str, float | None]:
    """The pass's counts, and its duration as pytest measured it."""
    try:
        suite = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        return "no results", None
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    summary = (
        f"{passed} passed, {n['failures']} failed, {n['errors']} errors, "
        f"{n['skipped']} skipped"
    )
    return summary, float(suite.get("time", 0)) or None


class Pass:
    """One pytest run of the matrix: a database and a broker."""

    def __init__(self, database: str, database_url: str, broker: str, extra: list[str]):
        self.database, self.database_url, self.broker = database, database_url, broker
        self.extra = extra
        self.label = f"{database} + {BROKER_LABELS[broker]}"
        self.tmp = tempfile.TemporaryDirectory()
        self.junit = Path(self.tmp.name) / "junit.xml"
        self.output = Path(self.tmp.name) / "output.txt"

    def env(self) -> dict:
        env = os.environ.copy()
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "TEST_BROKER": self.broker,
                "DJANGO_SECRET_KEY": "test-secret-key-that-is-long-enough-for-hs256-and-django",
                "JWT_SIGNING_KEY": "test-jwt-signing-key-of-fifty-characters-or-more-for-hs256",
                "DJANGO_DEBUG": "0",
                "DEMO_MODE": "0",
                "KAFKA_SESSION_TIMEOUT_MS": "6000",
                "KAFKA_FETCH_WAIT_MAX_MS": "10",
                "OUTBOX_POLL_INTERVAL_MS": "100",
                "LOG_FORMAT": "text",
                # production settings (DEBUG off) but plain HTTP inside the test process
                "DJANGO_SECURE_SSL_REDIRECT": "0",
            }
        )
        return env

    def command(self) -> list[str]:
        marks = ["postgres_only"] if self.database == "SQLite" else []
        marks += ["kafka_only"] if self.broker != "kafka" else []
        args = ["-m", " and ".join(f"not {m}" for m in marks)] if marks else []
        # a base temporary directory of its own (two sessions never share one),
        # kept after the run: the process and broker logs a failure names are there
        basetemp = f"--basetemp={TEST_TMP / self.database.lower()}"
        pytest = [sys.executable, "-m", "pytest", f"--junitxml={self.junit}"]
        return [*pytest, basetemp, *args]

    def start(self, *, captured: bool) -> None:
        """Start pytest: its output on ours, or kept in a file (``captured``)."""
        self.started = time.monotonic()
        self.captured = captured
        TEST_TMP.mkdir(parents=True, exist_ok=True)
        if not captured:
            print(f"\n=== tests on {self.label} ===", flush=True)
        out = self.output.open("w") if captured else None
        self.proc = subprocess.Popen(
            [*self.command(), *self.extra],
            env=self.env(),
            cwd=ROOT,
            stdin=subprocess.DEVNULL if captured else None,
            stdout=out,
            stderr=subprocess.STDOUT if captured else None,
            preexec_fn=death_signal(),  # no pass left running if we are killed
        )
        if out is not None:
            out.close()

    def stop(self, grace: float = 30) -> None:
        """Let an interrupted pass clean up (its brokers, its processes), then kill it."""
        if getattr(self, "proc", None) is None:
            return
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def finish(self) -> int:
        """Wait for it; print its output if kept, then its counts. Returns its exit code."""
        code = self.proc.wait()
        elapsed = time.monotonic() - self.started
        if self.captured:
            print(f"\n=== tests on {self.label} (ran beside the other pass) ===")
            print(self.output.read_text(errors="replace"), end="", flush=True)
        summary, took = counts(self.junit)
        # a pass that ran beside another ended before we waited for it: pytest's time
        took = took if self.captured and took else elapsed
        print(
            f"=== {self.label}: {summary} in {took:.0f}s (exit {code}) ===",
            flush=True,
        )
        self.tmp.cleanup()
        return code


def main() -> int:
    extra = sys.argv[1:]
    passes = []
    try:
        if reachable(PG_URL):
            passes.append(Pass("PostgreSQL", PG_URL, postgres_broker(), extra))
        elif IN_CI:
            raise Missing(f"PostgreSQL is not reachable at {PG_URL}")
        else:
            print(f"PostgreSQL not reachable at {PG_URL}: SQLite only", flush=True)
    except Missing as exc:
        print(f"FAILED (CI=true, no fallback): {exc}", flush=True)
        return 1
    passes.append(Pass("SQLite", SQLITE_URL, "tansu", extra))
    started = []
    try:
        if len(passes) == 1 or os.environ.get("TEST_SERIAL") == "1":
            codes = []
            for one in passes:
                started.append(one)
                one.start(captured=False)
                codes.append(one.finish())
        else:
            first, beside = passes
            print(
                f"{beside.label}: runs beside {first.label}, printed after it",
                flush=True,
            )
            started = [beside, first]
            beside.start(captured=True)
            first.start(captured=False)
            codes = [first.finish(), beside.finish()]
    except KeyboardInterrupt:  # Ctrl-C reached every pass: let them end, then go
        for one in started:
            one.stop()
        print("interrupted", flush=True)
        return 130
    # pytest exits 5 when no test ran: that is a failure here too.
    return next((c for c in codes if c != 0), 0)


if __name__ == "__main__":
    sys.exit(main())
