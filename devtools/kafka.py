"""Apache Kafka from its Maven jars: one combined KRaft node, or three on loopback.

``KafkaBroker`` serves PLAINTEXT (principal User:ANONYMOUS, a super user) and
SASL_SSL (SCRAM-SHA-256/512 users made at format time, a CA and server
certificate made here) with the StandardAuthorizer, so that ACL tests can use
the SCRAM users that are not super users. ``KafkaCluster`` runs three nodes
(replication factor 3, ``min.insync.replicas=2``) for the failover tests.

    python -m devtools.kafka [--port 9092] [--cluster] [--data DIR] [--keep]

runs one in the foreground and prints its start time and memory.
"""

import shutil
import tempfile
import time
from pathlib import Path

from devtools.kafka_jars import KAFKA_VERSION, KafkaUnavailable
from devtools.kafka_node import (
    KafkaNode,
    common_config,
    internal_topics,
    new_cluster_id,
)
from devtools.kafka_tls import make_certificates
from devtools.process import ProcessFailed, free_port

KIND = "kafka"
LABEL = f"Apache Kafka {KAFKA_VERSION}"
ADMIN_USER = "admin"
# name -> password; every user gets both SCRAM mechanisms.
SCRAM_USERS = {
    ADMIN_USER: "admin-secret",
    "alice": "alice-secret",
    "bob": "bob-secret",
}

# A killed node is noticed in 3 s, not 9, and its partitions get new leaders.
FAILOVER = {"broker.heartbeat.interval.ms": 500, "broker.session.timeout.ms": 3000}

__all__ = [
    "KafkaBroker",
    "KafkaCluster",
    "KafkaFromProperties",
    "KafkaUnavailable",
    "ProcessFailed",
]


class _Launcher:
    """What the single broker and the cluster share: data, start, stop, wipe."""

    kind = KIND
    label = LABEL
    version = KAFKA_VERSION
    keeps_data = True  # a restarted node comes back with its topics and offsets
    read_committed_hides_aborted = True

    def __init__(self, data_dir: Path | None):
        self.owns_data = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="healthcare-kafka-"))
        self.nodes: list[KafkaNode] = []
        self.cluster_id = self._cluster_id()

    def _cluster_id(self) -> str:
        path = self.data_dir / "cluster.id"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id())
        return path.read_text().strip()

    @property
    def address(self) -> str:
        return ",".join(f"127.0.0.1:{n.config['_port']}" for n in self.nodes)

    def start(self, timeout: float = 120) -> "_Launcher":
        """Format (first time only), start every node, wait until metadata is served."""
        started = time.monotonic()
        scram = getattr(self, "scram_users", {})
        for node in self.nodes:
            # --standalone: a one-node dynamic quorum (static voters need none)
            standalone = len(self.nodes) == 1 and "controller.quorum.voters" not in (
                node.config
            )
            node.format(self.cluster_id, standalone=standalone, scram=scram)
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_ready(max(1.0, timeout - (time.monotonic() - started)))
            self._wait_metadata(max(5.0, timeout - (time.monotonic() - started)))
        except BaseException:
            self.stop(wipe=False)
            raise
        self.started_in = time.monotonic() - started
        return self

    def _wait_metadata(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self.admin_config())
        deadline = time.monotonic() + timeout
        while True:
            try:
                if len(admin.list_topics(timeout=2).brokers) == len(self.nodes):
                    return
            except Exception:  # KafkaException while the brokers come up
                pass
            if time.monotonic() > deadline:
                node = self.nodes[0]
                node.process.fail(f"served no metadata within {timeout:.0f} s")
            time.sleep(0.2)

    def admin_config(self) -> dict:
        """confluent-kafka settings with which the launcher asks for metadata."""
        return {"bootstrap.servers": self.address}

    def stop(self, wipe: bool | None = None) -> None:
        """Stop every node (SIGTERM, SIGKILL after a grace); ``wipe`` defaults to
        removing the data directory only when this launcher made it."""
        for node in self.nodes:
            if node.process is not None and node.process.running:
                node.process.signal(15)
        for node in self.nodes:
            node.stop()
        if self.owns_data if wipe is None else wipe:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL every node (a crash); the data stays, ``start()`` resumes on it."""
        for node in self.nodes:
            node.kill()

    def restart(self, wipe: bool = False) -> None:
        """Stop and start again; with ``wipe``, empty like a new cluster."""
        self.stop(wipe=wipe)
        self.cluster_id = self._cluster_id()
        self.start()

    def rss_mb(self) -> float:
        return sum(node.rss_mb() for node in self.nodes)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class KafkaBroker(_Launcher):
    """One combined broker+controller node with PLAINTEXT and SASL_SSL listeners."""

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        heap: str = "512m",
        sasl: bool = True,
    ):
        super().__init__(data_dir)
        self.port = port or free_port()
        self.controller_port = free_port()
        self.sasl_port = free_port() if sasl else None
        self.scram_users = dict(SCRAM_USERS) if sasl else {}
        self.ca_file = None
        config = self._config()
        self.nodes = [KafkaNode(1, self.data_dir / "node-1", config, heap)]

    def _config(self) -> dict:
        listeners = {"PLAINTEXT": self.port, "CONTROLLER": self.controller_port}
        config = (
            {
                "process.roles": "broker,controller",
                "node.id": 1,
                "controller.quorum.bootstrap.servers": (
                    f"127.0.0.1:{self.controller_port}"
                ),
            }
            | common_config(self.data_dir / "node-1")
            | internal_topics(1, 1, 1)
        )
        if self.sasl_port:
            listeners["SASL_SSL"] = self.sasl_port
            config |= self._security()
        urls = ",".join(
            f"{name}://127.0.0.1:{port}" for name, port in listeners.items()
        )
        protocols = {name: "PLAINTEXT" for name in listeners} | {"SASL_SSL": "SASL_SSL"}
        config["listeners"] = config["advertised.listeners"] = urls
        config["listener.security.protocol.map"] = ",".join(
            f"{name}:{protocols[name]}" for name in listeners
        )
        config["_port"] = self.port
        return config

    def _security(self) -> dict:
        self.ca_file, keystore = make_certificates(self.data_dir / "tls")
        login = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return {
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": login,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": login,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": keystore,
            "authorizer.class.name": (
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
            ),
            "super.users": f"User:ANONYMOUS;User:{ADMIN_USER}",
        }

    @property
    def process(self):
        """The node's process (to SIGSTOP and SIGCONT it); None before a start."""
        return self.nodes[0].process

    @property
    def sasl_address(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def client_config(
        self,
        user: str | None = None,
        mechanism: str = "SCRAM-SHA-512",
        password: str | None = None,
    ) -> dict:
        """confluent-kafka settings for PLAINTEXT, or for SASL_SSL as ``user``."""
        if user is None:
            return {"bootstrap.servers": self.address}
        return {
            "bootstrap.servers": self.sasl_address,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": password or self.scram_users[user],
            "ssl.ca.location": str(self.ca_file),
        }


class KafkaCluster(_Launcher):
    """Three combined nodes on loopback: RF 3, ``min.insync.replicas=2``."""

    def __init__(self, size: int = 3, data_dir: Path | None = None, heap: str = "384m"):
        super().__init__(data_dir)
        ports = [(free_port(), free_port()) for _ in range(size)]
        voters = ",".join(f"{i}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports, 1))
        for node_id, (port, controller) in enumerate(ports, 1):
            node_dir = self.data_dir / f"node-{node_id}"
            config = (
                {
                    "process.roles": "broker,controller",
                    "node.id": node_id,
                    "controller.quorum.voters": voters,
                    "listeners": f"PLAINTEXT://127.0.0.1:{port},"
                    f"CONTROLLER://127.0.0.1:{controller}",
                    "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
                    "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,"
                    "PLAINTEXT:PLAINTEXT",
                    "_port": port,
                }
                | common_config(node_dir)
                | internal_topics(size, 2, 3)
                | FAILOVER
            )
            self.nodes.append(KafkaNode(node_id, node_dir, config, heap))

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node (its data stays, so it can rejoin)."""
        self.node(node_id).kill()

    def start_node(self, node_id: int, timeout: float = 90) -> None:
        node = self.node(node_id)
        node.launch()
        node.wait_ready(timeout)


class KafkaFromProperties(_Launcher):
    """One node on a complete ``server.properties`` given as a dict (e.g. what
    devtools.kafka_image makes of docker-compose's environment); ``client`` is the
    confluent-kafka configuration that reaches it (``bootstrap.servers``, security).
    Storage formatted already (as the image formats it) is used as it is."""

    def __init__(
        self,
        config: dict,
        client: dict,
        data_dir: Path,
        cluster_id: str | None = None,
        heap: str = "512m",
    ):
        super().__init__(data_dir)
        self.cluster_id = cluster_id or self.cluster_id
        self.client = dict(client)
        self.nodes = [KafkaNode(1, self.data_dir / "node-1", dict(config), heap)]

    @property
    def address(self) -> str:
        return self.client["bootstrap.servers"]

    def admin_config(self) -> dict:
        return dict(self.client)


def main(argv: list[str] | None = None) -> int:
    from devtools.kafka_cli import run

    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
