"""docker-compose's Kafka services on loopback: their environment made into the
server.properties the apache/kafka image writes (devtools.kafka_image), hosts and
ports moved to 127.0.0.1 and free ports, container paths to a temporary directory."""

import os
import re
import shlex
import subprocess
from pathlib import Path

from devtools.kafka import KafkaFromProperties
from devtools.kafka_image import (
    configure,
    read_properties,
    server_properties,
    wrapper_setup,
)
from devtools.kafka_jars import libs_dir
from devtools.kafka_node import TOOLS_LOG4J, java_command
from devtools.kafka_tls import make_certificates
from devtools.process import free_port

# What compose does with ${NAME}, ${NAME:-default}, ${NAME:?error} and $$.
VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
HOST_PORT = re.compile(r"\b(?:kafka\d?|localhost|0\.0\.0\.0):(\d+)\b")
CONTAINER_PATHS = ("/var/lib/kafka/data", "/etc/kafka/secrets")


def interpolate(value, variables: dict) -> str:
    """A compose value with its variables substituted, as `docker compose` does."""

    def substitute(match: re.Match) -> str:
        if match[0] == "$$":
            return "$"
        name, kind, default = match[1], match[2] or "", match[3] or ""
        if name in variables:
            return variables[name]
        if kind.endswith("-"):
            return default
        raise KeyError(f"compose needs {name}: {default}")

    return VARIABLE.sub(substitute, str(value))


class Loopback:
    """One compose Kafka node moved to loopback: its ports and paths here."""

    def __init__(self, work: Path, container_ports=(29092, 29093, 9092)):
        self.work = work
        self.ports = {port: free_port() for port in container_ports}
        self.paths = {
            "/var/lib/kafka/data": work / "node-1" / "data",
            "/etc/kafka/secrets": work / "secrets",
        }
        self.secrets = self.paths["/etc/kafka/secrets"]
        self.secrets.mkdir(parents=True, exist_ok=True)

    def value(self, value) -> str:
        value = HOST_PORT.sub(lambda m: f"127.0.0.1:{self.ports[int(m[1])]}", value)
        for container, here in self.paths.items():
            value = value.replace(container, str(here))
        return value

    def env(self, environment: dict, variables: dict | None = None) -> dict:
        return {
            name: self.value(interpolate(value, variables or {}))
            for name, value in environment.items()
        }

    def address(self, container_address: str) -> str:
        return self.value(container_address)


def image_properties(env: dict, secrets: Path, work: Path) -> dict:
    """The image's server.properties for ``env``: by our rule, which must equal
    what the pinned Kafka's own KafkaDockerWrapper writes (it formats the storage
    too, as the image's launch script does)."""
    env = configure(env, secrets)
    ours = server_properties(env)
    theirs = read_properties(wrapper_setup(env, work / "wrapper"))
    assert ours == theirs
    return ours


def start_node(config: dict, client: dict, loopback: Loopback, cluster_id: str):
    return KafkaFromProperties(
        config, client, loopback.work, cluster_id=cluster_id, heap="384m"
    ).start()


def client_settings(app_env: dict, loopback: Loopback) -> dict:
    """settings.KAFKA entries from a compose app service's environment."""
    env = {name: loopback.value(str(value)) for name, value in app_env.items()}
    names = {
        "BROKERS": "KAFKA_BROKERS",
        "SECURITY_PROTOCOL": "KAFKA_SECURITY_PROTOCOL",
        "SASL_MECHANISM": "KAFKA_SASL_MECHANISM",
        "SASL_USERNAME": "KAFKA_SASL_USERNAME",
        "SASL_PASSWORD": "KAFKA_SASL_PASSWORD",
        "SSL_CA_LOCATION": "KAFKA_SSL_CA_LOCATION",
    }
    found = {key: env[name] for key, name in names.items() if name in env}
    found["SESSION_TIMEOUT_MS"] = int(env["KAFKA_SESSION_TIMEOUT_MS"])
    found["TRANSACTION_TIMEOUT_MS"] = int(env["KAFKA_TRANSACTION_TIMEOUT_MS"])
    return found


def broker_secrets(secrets: Path) -> None:
    """What the production overlay expects in ./deploy/kafka-secrets, made from the
    test CA: broker.pem (PKCS#8 key and certificate) and ca.pem."""
    ca, keystore = make_certificates(secrets.parent / "tls")
    (secrets / "ca.pem").write_text(ca.read_text())
    (secrets / "broker.pem").write_text(keystore.read_text())


def run_format_script(script: str, env: dict, work: Path) -> None:
    """The production kafka command up to the image's entrypoint: its format step,
    with kafka-storage.sh run from the pinned jars."""
    storage = work / "kafka-storage.sh"
    java = java_command(
        libs_dir(),
        work / "storage.log4j2.properties",
        TOOLS_LOG4J,
        heap=("64m", "256m"),
        c1=True,
    )
    storage.write_text(
        f'#!/bin/bash\nexec {shlex.join(java)} kafka.tools.StorageTool "$@"\n'
    )
    storage.chmod(0o755)
    script = script.replace("/opt/kafka/bin/kafka-storage.sh", str(storage))
    script = script.replace("/tmp/format.properties", str(work / "format.properties"))
    assert "exec /etc/kafka/docker/run" in script
    script = script.replace("exec /etc/kafka/docker/run", "true")
    result = subprocess.run(
        ["bash", "-c", script],
        env={"PATH": os.environ["PATH"]} | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
