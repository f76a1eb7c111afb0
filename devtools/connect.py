"""A Kafka Connect worker (standalone) with Debezium's PostgreSQL connector.

The worker's jars and the Debezium plugin come from Maven Central into
``~/.cache/healthcare/connect-<kafka version>/`` (see ``devtools.maven``), once.
The connector itself is registered through the worker's REST API with the JSON
that ``manage.py outbox_cdc config`` prints, as it would be in production.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from devtools import maven
from devtools.kafka_jars import KAFKA_VERSION, LOG4J_VERSION
from devtools.kafka_node import java_command, log4j_properties
from devtools.process import Process, free_port, tail

DEBEZIUM_VERSION = "3.6.1.Final"
ROOT = Path(__file__).resolve().parent.parent

WORKER = """bootstrap.servers={brokers}
listeners=http://127.0.0.1:{port}
rest.advertised.host.name=127.0.0.1
plugin.path={plugins}
offset.storage.file.filename={offsets}
offset.flush.interval.ms={flush_ms}
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
header.converter=org.apache.kafka.connect.storage.SimpleHeaderConverter
config.providers=env
config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider
"""
LOG4J = log4j_properties(
    {"org.apache.kafka.clients": "WARN", "org.apache.kafka.common.config": "WARN"}
)


class ConnectError(RuntimeError):
    """The worker refused a request or the connector did not reach RUNNING."""


def connect_jars() -> Path:
    """Kafka Connect's runtime (with a log4j2 binding)."""
    return maven.jars(
        maven.CACHE / f"connect-{KAFKA_VERSION}" / "libs",
        [
            f"org.apache.kafka:connect-runtime:{KAFKA_VERSION}",
            f"org.apache.logging.log4j:log4j-slf4j-impl:{LOG4J_VERSION}",
            f"org.apache.logging.log4j:log4j-core:{LOG4J_VERSION}",
        ],
    )


def debezium_plugins() -> Path:
    """The plugin path: one directory per plugin, without what Connect provides."""
    plugins = maven.CACHE / f"connect-{KAFKA_VERSION}" / "plugins"
    maven.jars(
        plugins / f"debezium-connector-postgres-{DEBEZIUM_VERSION}",
        [f"io.debezium:debezium-connector-postgres:{DEBEZIUM_VERSION}"],
        exclude_groups="org.apache.kafka,org.slf4j",
    )
    return plugins


class ConnectWorker:
    """A standalone Connect worker on a free REST port.

    Its source offsets (Debezium's LSN) live in a file in ``directory``, so a
    worker restarted on the same directory resumes where the last one committed.
    """

    def __init__(
        self, directory: Path, brokers: str, *, flush_ms: int = 1000, env=None
    ):
        self.directory = Path(directory)
        self.brokers = brokers
        self.flush_ms = flush_ms
        self.env = env
        self.port: int | None = None
        self.process: Process | None = None
        self.started_in: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "connect.log"

    def start(self, timeout: float = 120) -> "ConnectWorker":
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        worker = self.directory / "worker.properties"
        worker.write_text(
            WORKER.format(
                brokers=self.brokers,
                port=self.port,
                plugins=debezium_plugins(),
                offsets=self.directory / "offsets.dat",
                flush_ms=self.flush_ms,
            )
        )
        log4j = self.directory / "log4j2.properties"
        argv = java_command(
            connect_jars(), log4j, LOG4J, heap=("128m", "768m"), c1=True
        )
        argv += ["org.apache.kafka.connect.cli.ConnectStandalone", worker]
        env = os.environ.copy() | (self.env or {})
        self.process = Process("kafka connect", argv, log_path=self.log_path, env=env)
        started = time.monotonic()
        self.process.start(
            lambda: self.request("GET", "/connectors") is not None, timeout
        )
        self.started_in = time.monotonic() - started
        return self

    def stop(self, grace: float = 20) -> int | None:
        """SIGTERM (the worker commits its offsets), SIGKILL after ``grace``."""
        if self.process is None:
            return None
        code = self.process.stop(grace)
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process = None

    def request(self, method: str, path: str, body: dict | None = None):
        """One REST call; the decoded JSON answer (None for an empty one)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read()
        except urllib.error.HTTPError as exc:
            raise ConnectError(
                f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}"
            ) from None
        return json.loads(text) if text else None

    def put_connector(self, name: str, config: dict) -> None:
        """Create or update the connector (PUT /connectors/NAME/config)."""
        self.request("PUT", f"/connectors/{name}/config", config)

    def delete_connector(self, name: str) -> None:
        self.request("DELETE", f"/connectors/{name}")

    def wait_running(self, name: str, timeout: float = 60) -> dict:
        """Wait until the connector and its task run; raise if one fails."""
        deadline = time.monotonic() + timeout
        status: dict = {}
        while time.monotonic() < deadline:
            try:
                status = self.request("GET", f"/connectors/{name}/status")
            except ConnectError:
                status = {}
            states = [status.get("connector", {}).get("state")]
            states += [t.get("state") for t in status.get("tasks", [])]
            if "FAILED" in states:
                raise ConnectError(f"connector {name} failed: {json.dumps(status)}")
            if len(states) > 1 and set(states) == {"RUNNING"}:
                return status
            time.sleep(0.2)
        raise ConnectError(
            f"connector {name} not running within {timeout:.0f} s: {status}; "
            f"last lines of {self.log_path}:\n{tail(self.log_path)}"
        )

    def rss_mb(self) -> float:
        return self.process.rss_mb() if self.process else 0.0


# -- `make run BROKER=kafka RELAY=cdc` (called by scripts/devrun.py) --------------

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/healthcare_cdc"


class CDCUnavailable(RuntimeError):
    """What is missing for CDC under `make run`, said plainly."""


def devrun_database_url(env: dict) -> str:
    """DATABASE_URL if set (it must be PostgreSQL), else a local database of its own."""
    url = env.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    if not url.startswith(("postgres://", "postgresql://")):
        raise CDCUnavailable(
            f"RELAY=cdc needs PostgreSQL; DATABASE_URL is {url.split(':', 1)[0]}"
        )
    return url


def devrun_prepare_database(url: str) -> None:
    """Check the server and wal_level=logical; create the database if it is missing."""
    import psycopg
    from psycopg import sql

    parsed = urllib.parse.urlparse(url)
    name = parsed.path.lstrip("/")
    server = parsed._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
            (level,) = conn.execute("SHOW wal_level").fetchone()
            if level != "logical":
                raise CDCUnavailable(
                    f"PostgreSQL at {parsed.hostname}:{parsed.port or 5432} has "
                    f"wal_level={level}; CDC needs logical: ALTER SYSTEM SET "
                    "wal_level = logical, then restart PostgreSQL"
                )
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [name]
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        why = str(exc).strip().splitlines()[-1].strip()
        raise CDCUnavailable(
            f"RELAY=cdc needs PostgreSQL, none answers at {parsed.hostname}:"
            f"{parsed.port or 5432} ({why}); start one or set DATABASE_URL"
        ) from None


def devrun_connect(brokers: str, env: dict, directory: Path) -> ConnectWorker:
    """Start a worker, create the slot and register the connector (env: the app's)."""
    worker = ConnectWorker(directory, brokers).start()
    manage_env = env | {"CDC_CONNECT_URL": worker.url}
    try:
        for action in ("setup", "register"):
            subprocess.run(
                [sys.executable, "manage.py", "outbox_cdc", action],
                cwd=ROOT,
                env=manage_env,
                check=True,
            )
        worker.wait_running(env.get("CDC_CONNECTOR_NAME", "healthcare-outbox"))
    except BaseException:
        worker.stop()
        raise
    return worker
