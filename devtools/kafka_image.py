"""What the official ``apache/kafka`` Docker image makes of a container's environment.

The image's entrypoint ``/etc/kafka/docker/run`` sources ``configure`` and then
``launch`` (apache/kafka, ``docker/resources/common-scripts/`` and ``docker/jvm/launch``).
``launch`` runs ``kafka.docker.KafkaDockerWrapper setup``, which writes
``/opt/kafka/config/server.properties`` from the environment and formats the storage
with ``format --cluster-id=$CLUSTER_ID -c server.properties`` (no ``--standalone``: the
image keeps static voters, ``controller.quorum.voters``); "already formatted" is no
error. The rule, as in ``KafkaDockerWrapper.getServerConfigsFromEnv`` of the pinned
kafka_2.13 jar (read from its bytecode, 4.3.0): every variable whose name starts with
``KAFKA_``, except those in ``Constants.ExcludeServerPropsEnv`` below, is one line
``key=value`` where ``key`` is the name with its first ``KAFKA_`` removed, lower-cased,
each ``_`` made ``.``, then ``...`` made ``-`` and ``..`` made ``_`` (so ``___`` in
the name is ``-`` and ``__`` is ``_``). Without a mounted
``/mnt/shared/config/server.properties`` those lines are the whole file.

``configure`` adds, before that, when KAFKA_ADVERTISED_LISTENERS contains the text
``SSL://`` (a listener *named* SSL or SASL_SSL; INTERNAL or EXTERNAL listeners of those
protocols do not count): ``KAFKA_SSL_KEYSTORE_LOCATION`` =
/etc/kafka/secrets/$KAFKA_SSL_KEYSTORE_FILENAME, and the key and keystore passwords
read from the files named by KAFKA_SSL_KEY_CREDENTIALS and
KAFKA_SSL_KEYSTORE_CREDENTIALS (the truststore likewise when client authentication
is required or requested); with a listener named ``SASL_*`` it requires KAFKA_OPTS.
Without KAFKA_LISTENERS it listens on the advertised ports of 0.0.0.0.
"""

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from devtools.kafka_jars import libs_dir
from devtools.kafka_node import TOOLS_LOG4J, java_command

EXCLUDED = frozenset(
    {
        "KAFKA_VERSION",
        "KAFKA_HEAP_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_LOG4J_ROOT_LOGLEVEL",
        "KAFKA_LOG4J_LOGGERS",
        "KAFKA_TOOLS_LOG4J_LOGLEVEL",
        "KAFKA_JMX_HOSTNAME",
    }
)
SECRETS = "/etc/kafka/secrets"


def property_name(variable: str) -> str:
    key = variable.replace("KAFKA_", "", 1).lower().replace("_", ".")
    return key.replace("...", "-").replace("..", "_")


def server_properties(env: Mapping[str, str]) -> dict[str, str]:
    """The server.properties the image's KafkaDockerWrapper writes for ``env``."""
    return {
        property_name(name): str(value)
        for name, value in env.items()
        if name.startswith("KAFKA_") and name not in EXCLUDED
    }


def _read_secret(secrets: Path, env: Mapping[str, str], name: str) -> str:
    return (secrets / env[name]).read_text()


def configure(env: Mapping[str, str], secrets: Path) -> dict[str, str]:
    """``env`` as the image's ``configure`` script leaves it (see the module text);
    ``secrets`` stands for /etc/kafka/secrets."""
    env = {name: str(value) for name, value in env.items()}
    advertised = env.get("KAFKA_ADVERTISED_LISTENERS", "")
    if "KAFKA_LISTENERS" not in env and advertised:
        env["KAFKA_LISTENERS"] = re.sub(r"://[^:]*:", "://0.0.0.0:", advertised)
    if "SSL://" in advertised:
        env["KAFKA_SSL_KEYSTORE_LOCATION"] = str(
            secrets / env["KAFKA_SSL_KEYSTORE_FILENAME"]
        )
        env["KAFKA_SSL_KEY_PASSWORD"] = _read_secret(
            secrets, env, "KAFKA_SSL_KEY_CREDENTIALS"
        )
        env["KAFKA_SSL_KEYSTORE_PASSWORD"] = _read_secret(
            secrets, env, "KAFKA_SSL_KEYSTORE_CREDENTIALS"
        )
        if re.search("required|requested", env.get("KAFKA_SSL_CLIENT_AUTH", "")):
            env["KAFKA_SSL_TRUSTSTORE_LOCATION"] = str(
                secrets / env["KAFKA_SSL_TRUSTSTORE_FILENAME"]
            )
            env["KAFKA_SSL_TRUSTSTORE_PASSWORD"] = _read_secret(
                secrets, env, "KAFKA_SSL_TRUSTSTORE_CREDENTIALS"
            )
    if re.search("SASL_.*://", advertised) and not env.get("KAFKA_OPTS"):
        raise ValueError("KAFKA_OPTS environment variable not set")
    return env


def read_properties(path: Path) -> dict[str, str]:
    """A properties file as written by the wrapper (``key=value`` lines)."""
    lines = (line for line in path.read_text().splitlines() if line.strip())
    return dict(line.split("=", 1) for line in lines if not line.startswith("#"))


def wrapper_setup(env: Mapping[str, str], work: Path) -> Path:
    """Run the pinned Kafka's own ``KafkaDockerWrapper setup`` on ``env``, as the
    image's launch script does: it writes ``work/final/server.properties`` and
    formats the storage it names. Returns that file; "already formatted" is accepted
    as the image accepts it."""
    dirs = [work / name for name in ("default", "mounted", "final")]
    for directory in dirs:
        directory.mkdir(parents=True, exist_ok=True)
    argv = java_command(
        libs_dir(),
        work / "tools.log4j2.properties",
        TOOLS_LOG4J,
        heap=("64m", "256m"),
        c1=True,
    )
    argv += ["kafka.docker.KafkaDockerWrapper", "setup"]
    argv += [
        f"--{n}-configs-dir={d}" for n, d in zip(("default", "mounted", "final"), dirs)
    ]
    child_env = {"PATH": os.environ.get("PATH", "")} | dict(env)
    result = subprocess.run(
        argv, env=child_env, capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and "already formatted" not in output.lower():
        raise RuntimeError(f"KafkaDockerWrapper setup failed: {output[-2000:]}")
    return dirs[2] / "server.properties"
