"""Jars from Maven Central into a cache outside git, resolved once and reused."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE = Path(
    os.environ.get("HEALTHCARE_CACHE", Path.home() / ".cache" / "healthcare")
).expanduser()

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.healthcare</groupId><artifactId>jars</artifactId>
  <version>1</version><packaging>pom</packaging>
  <dependencies>{dependencies}</dependencies>
</project>
"""
DEPENDENCY = (
    "<dependency><groupId>{0}</groupId><artifactId>{1}</artifactId>"
    "<version>{2}</version></dependency>"
)


class MavenError(RuntimeError):
    """Maven is missing or could not resolve the jars."""


def jars(target: Path, coordinates: list[str], exclude_groups: str = "") -> Path:
    """Resolve ``group:artifact:version`` and their runtime dependencies into target.

    The directory is complete once it holds ``.complete``; a later call returns it
    at once. ``exclude_groups`` (comma-separated) leaves out what the host provides,
    e.g. Kafka's own jars in a Connect plugin directory.
    """
    if (target / ".complete").exists():
        return target
    if shutil.which("mvn") is None:
        raise MavenError("mvn not found: install Maven 3.8+ to fetch the Kafka jars")
    deps = "".join(DEPENDENCY.format(*c.split(":")) for c in coordinates)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        (Path(work) / "pom.xml").write_text(POM.format(dependencies=deps))
        libs = Path(work) / "libs"
        argv = [
            "mvn",
            "-B",
            "-q",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ]
        if exclude_groups:
            argv.append(f"-DexcludeGroupIds={exclude_groups}")
        done = subprocess.run(argv, cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-20:]
            raise MavenError("mvn failed:\n" + "\n".join(tail))
        (libs / ".complete").write_text("\n".join(coordinates) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        libs.rename(target)
    return target
