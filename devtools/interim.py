"""Temporary: a process helper and a one-node Apache Kafka (KRaft) from its jars.

Stands in for ``devtools.process`` and ``devtools.kafka`` (branch kafkadev) until
they are merged; then the CDC tests and devtools.connect import those instead.
"""

import base64
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from devtools import maven

KAFKA_VERSION = "4.3.0"  # what Debezium 3.6.1.Final is built against
LOG4J_VERSION = "2.25.4"  # what Kafka 4.3.0 uses

JVM = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]

LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="{log}" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Logger name="org.apache.kafka.common.config" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


class ProcessFailed(RuntimeError):
    """A process exited or never became ready; the message ends with its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = Path(path).read_bytes()[-64 * 1024 :].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def log4j_config(directory: Path, log: Path) -> Path:
    path = directory / "log4j2.xml"
    path.write_text(LOG4J2_XML.format(log=log))
    return path


class Process:
    """A child process with its output in a file; SIGTERM, then SIGKILL, on stop."""

    def __init__(self, name: str, argv: list, *, log_path: Path, env=None):
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, ready, timeout: float) -> "Process":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(a) for a in self.argv],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not _probe(ready):
            if self.proc.poll() is not None:
                self.fail(
                    f"exited with code {self.proc.returncode} before it was ready"
                )
            if time.monotonic() > deadline:
                self.stop(grace=5)
                self.fail(f"was not ready within {timeout:.0f} s")
            time.sleep(0.1)
        return self

    def fail(self, what: str) -> None:
        raise ProcessFailed(
            f"{self.name} {what}; last lines of {self.log_path}:\n{tail(self.log_path)}"
        )

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()

    def stop(self, grace: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except (OSError, AttributeError):
            pass
        return 0.0


def _probe(ready) -> bool:
    try:
        return bool(ready())
    except Exception:  # not reachable yet
        return False


def kafka_jars() -> Path:
    return maven.jars(
        maven.CACHE / f"kafka-{KAFKA_VERSION}" / "libs",
        [
            f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}",
            f"org.apache.logging.log4j:log4j-slf4j-impl:{LOG4J_VERSION}",
            f"org.apache.logging.log4j:log4j-core:{LOG4J_VERSION}",
        ],
    )


SERVER = """process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{cport}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
"""


class KafkaBroker:
    """One combined broker+controller node on free ports; data kept in ``directory``."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.port = free_port()
        self.process: Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> "KafkaBroker":
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "server.properties"
        config.write_text(
            SERVER.format(
                port=self.port, cport=free_port(), data=self.directory / "data"
            )
        )
        log = self.directory / "kafka.log"
        java = ["java", "-Xms128m", "-Xmx512m", *JVM, "-cp", f"{kafka_jars()}/*"]
        java.append(f"-Dlog4j2.configurationFile={log4j_config(self.directory, log)}")
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        fmt = [*java, "kafka.tools.StorageTool", "format", "--standalone"]
        fmt += ["-t", cluster.replace("-", "A", 1) if cluster[0] == "-" else cluster]
        subprocess.run([*fmt, "-c", config], check=True, capture_output=True)
        self.process = Process(
            "kafka", [*java, "kafka.Kafka", config], log_path=log, env=os.environ.copy()
        )
        self.process.start(lambda: port_open(self.port) and self._started(log), timeout)
        return self

    @staticmethod
    def _started(log: Path) -> bool:
        return "Kafka Server started" in log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
