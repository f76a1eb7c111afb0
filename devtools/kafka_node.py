"""One combined Apache Kafka broker+controller node: config, storage, process."""

import base64
import time
import uuid
from pathlib import Path

from devtools.kafka_jars import libs_dir
from devtools.process import Process

STARTED_MESSAGE = "Kafka Server started"
JVM_OPTIONS = [
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]


def log4j_properties(
    loggers: dict[str, str], *, root: str = "INFO", stderr: bool = False
) -> str:
    """A log4j2 configuration for a Kafka JVM: one console appender, levels by logger.

    The console is the process's stdout (``stderr``: its stderr), which
    ``devtools.process.Process`` writes to the log file.
    """
    lines = ["status = warn", "appender.out.type = Console", "appender.out.name = OUT"]
    lines += ["appender.out.target = SYSTEM_ERR"] if stderr else []
    lines += [
        "appender.out.layout.type = PatternLayout",
        "appender.out.layout.pattern = [%d] %p %m (%c)%n",
        f"rootLogger.level = {root}",
        "rootLogger.appenderRef.out.ref = OUT",
    ]
    for n, (name, level) in enumerate(loggers.items()):
        lines += [f"logger.l{n}.name = {name}", f"logger.l{n}.level = {level}"]
    return "\n".join(lines) + "\n"


def java_command(
    libs: Path, log4j_file: Path, log4j: str, *, heap: tuple[str, str], c1: bool
) -> list[str]:
    """``java`` with our options and the jars of ``libs``; writes ``log4j_file``.

    ``heap`` is (-Xms, -Xmx); ``c1`` keeps the JIT at its first tier (a quicker
    start for short-lived tools and test workers).
    """
    log4j_file.write_text(log4j)
    return [
        "java",
        f"-Xms{heap[0]}",
        f"-Xmx{heap[1]}",
        *(["-XX:TieredStopAtLevel=1"] if c1 else []),
        *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={log4j_file}",
        "-cp",
        f"{libs}/*",
    ]


_QUIET = {"state.change.logger": "WARN", "kafka.request.logger": "WARN"}
BROKER_LOG4J = log4j_properties(_QUIET)
TOOLS_LOG4J = log4j_properties(_QUIET, root="WARN", stderr=True)


def new_cluster_id() -> str:
    """What ``kafka-storage random-uuid`` prints: 16 random bytes, URL-safe base64."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def properties(values: dict) -> str:
    return "".join(
        f"{key}={value}\n" for key, value in values.items() if not key.startswith("_")
    )


def internal_topics(replicas: int, min_isr: int, partitions: int) -> dict:
    """Offsets, transaction state and share state sized for this cluster."""
    return {
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": partitions,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": partitions,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "share.coordinator.state.topic.num.partitions": partitions,
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
    }


class KafkaNode:
    """One combined broker+controller JVM: its config, storage and process."""

    def __init__(self, node_id: int, data_dir: Path, config: dict, heap: str):
        self.node_id = node_id
        self.data_dir = Path(data_dir)
        self.config = config
        self.heap = heap
        self.process: Process | None = None
        self.started_at = self.started_in = 0.0

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        """The (first) directory of ``log.dirs``, where format writes meta.properties."""
        return Path(str(self.config["log.dirs"]).split(",")[0])

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    def java(self, log4j: str, quick: bool) -> list[str]:
        heap = ("64m", "256m") if quick else ("128m", self.heap)
        config = self.data_dir / ("tools" if quick else "broker")
        config = config.with_suffix(".log4j2.properties")
        return java_command(libs_dir(), config, log4j, heap=heap, c1=quick)

    def format(self, cluster_id: str, *, standalone: bool, scram: dict) -> None:
        """Write the config and format storage (once: kept data is reused)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(properties(self.config))
        if (self.log_dir / "meta.properties").exists():
            return
        argv = [
            *self.java(TOOLS_LOG4J, quick=True),
            "kafka.tools.StorageTool",
            "format",
        ]
        argv += ["-t", cluster_id, "-c", str(self.config_file)]
        argv += ["--standalone"] if standalone else []
        for name, password in scram.items():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                argv += [
                    "--add-scram",
                    f"{mechanism}=[name={name},password={password}]",
                ]
        tool = Process(
            f"kafka-storage format (node {self.node_id})",
            argv,
            log_path=self.data_dir / "format.log",
        )
        tool.start()
        if tool.proc.wait(120) != 0:
            tool.fail(f"exited with code {tool.proc.returncode}")

    def launch(self) -> None:
        argv = [*self.java(BROKER_LOG4J, quick=False), "kafka.Kafka", self.config_file]
        self.process = Process(
            f"Apache Kafka node {self.node_id}", argv, log_path=self.log_path
        )
        self.started_at = time.monotonic()
        self.process.start()

    def wait_ready(self, timeout: float) -> None:
        self.process.wait_ready(
            lambda: self.process.log_contains(STARTED_MESSAGE), timeout
        )
        self.started_in = time.monotonic() - self.started_at

    def stop(self, grace: float = 15) -> None:
        if self.process is not None:
            self.process.stop(grace)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def rss_mb(self) -> float:
        return self.process.rss_mb() if self.process else 0.0


def common_config(node_dir: Path) -> dict:
    """Broker settings for a test or dev cluster, whatever its size."""
    return {
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": node_dir / "data",
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": 0,
        # an expired transaction is aborted within a second, not ten (tests)
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000,
        "num.network.threads": 2,
        "num.io.threads": 4,
    }
