"""The pinned Apache Kafka's jars, resolved by Maven into a cache outside git.

The cache is ``devtools.maven.CACHE``/kafka-<version>/libs (by default
``~/.cache/healthcare``), shared by every clone and run: only the first
resolution needs the network. ``KAFKA_VERSION`` is the one pin for broker and
Kafka Connect: the Kafka that Debezium 3.6.1.Final is built against
(``version.kafka`` in io.debezium:debezium-build-parent:3.6.1.Final).
"""

import shutil
from pathlib import Path

from devtools import maven

KAFKA_VERSION = "4.3.0"
SCALA_VERSION = "2.13"
# Kafka 4.x logs through SLF4J 1.7 and ships no binding in its pom: add log4j2's.
LOG4J_VERSION = "2.25.3"


class KafkaUnavailable(RuntimeError):
    """Java or Maven is missing, or Maven could not resolve the jars."""


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    return maven.CACHE / f"kafka-{version}"


def missing_tools() -> list[str]:
    """The names of what this machine lacks to run Apache Kafka (java, mvn)."""
    return [tool for tool in ("java", "mvn") if shutil.which(tool) is None]


def cached(version: str = KAFKA_VERSION) -> bool:
    """Whether the jars are resolved already (no Maven or network needed)."""
    return maven.complete(cache_dir(version) / "libs")


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    """The directory of jars for ``java -cp 'DIR/*'``, resolving it the first time."""
    libs = cache_dir(version) / "libs"
    if maven.complete(libs):
        return libs
    if shutil.which("java") is None:
        raise KafkaUnavailable("Apache Kafka needs Java: no `java` on PATH")
    coordinates = [f"org.apache.kafka:kafka_{SCALA_VERSION}:{version}"]
    coordinates += [
        f"org.apache.logging.log4j:{artifact}:{LOG4J_VERSION}"
        for artifact in ("log4j-slf4j-impl", "log4j-core")
    ]
    try:
        return maven.jars(libs, coordinates)
    except maven.MavenError as exc:
        raise KafkaUnavailable(f"Apache Kafka {version}: {exc}") from None
