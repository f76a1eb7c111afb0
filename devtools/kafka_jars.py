"""The pinned Apache Kafka's jars, resolved by Maven into a cache outside git.

The cache (``$XDG_CACHE_HOME/healthcare/kafka-<version>/libs``, by default under
``~/.cache``) is shared by every clone and run: only the first resolution needs
the network. ``KAFKA_VERSION`` is the one pin for broker and Kafka Connect: the
Kafka that Debezium 3.6.1.Final is built against (``version.kafka`` in
io.debezium:debezium-build-parent:3.6.1.Final).
"""

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

KAFKA_VERSION = "4.3.0"
SCALA_VERSION = "2.13"
# Kafka 4.x logs through SLF4J 1.7 and ships no binding in its pom: add log4j2's.
LOG4J_VERSION = "2.25.3"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>healthcare.devtools</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""


class KafkaUnavailable(RuntimeError):
    """Java or Maven is missing, or Maven could not resolve the jars."""


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "healthcare" / f"kafka-{version}"


def missing_tools() -> list[str]:
    """The names of what this machine lacks to run Apache Kafka (java, mvn)."""
    return [tool for tool in ("java", "mvn") if shutil.which(tool) is None]


def cached(version: str = KAFKA_VERSION) -> bool:
    """Whether the jars are resolved already (no Maven or network needed)."""
    return (cache_dir(version) / "libs" / ".complete").exists()


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    """The directory of jars for ``java -cp 'DIR/*'``, resolving it the first time."""
    root = cache_dir(version)
    libs = root / "libs"
    if (libs / ".complete").exists():
        return libs
    if shutil.which("java") is None:
        raise KafkaUnavailable("Apache Kafka needs Java: no `java` on PATH")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one resolution at a time per machine
        if not (libs / ".complete").exists():
            _resolve(root, version)
    return libs


def _resolve(root: Path, version: str) -> None:
    if shutil.which("mvn") is None:
        raise KafkaUnavailable(
            f"Apache Kafka {version} is not in {root} and Maven (`mvn`) is missing"
        )
    pom = root / "pom.xml"
    pom.write_text(POM.format(kafka=version, scala=SCALA_VERSION, log4j=LOG4J_VERSION))
    staging = root / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    argv = ["mvn", "-B", "-q", "-f", str(pom), f"{DEPENDENCY_PLUGIN}:copy-dependencies"]
    argv += ["-DincludeScope=runtime", f"-DoutputDirectory={staging}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        lines = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise KafkaUnavailable(
            f"Maven could not resolve Apache Kafka {version}:\n" + "\n".join(lines)
        )
    (staging / ".complete").write_text(version + "\n")
    libs = root / "libs"
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
