"""Jars from Maven Central into a cache outside git, resolved once and reused.

The cache (``$HEALTHCARE_CACHE``, else ``$XDG_CACHE_HOME/healthcare``, else
``~/.cache/healthcare``) is shared by every clone and run: only the first
resolution needs the network, and one resolution of a directory runs at a time
on a machine.
"""

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE = Path(
    os.environ.get("HEALTHCARE_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "healthcare"
).expanduser()
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

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


def complete(target: Path) -> bool:
    """Whether ``target`` holds a finished resolution (no Maven or network needed)."""
    return (target / ".complete").exists()


def jars(target: Path, coordinates: list[str], exclude_groups: str = "") -> Path:
    """Resolve ``group:artifact:version`` and their runtime dependencies into target.

    The directory is complete once it holds ``.complete``; a later call returns it
    at once. ``exclude_groups`` (comma-separated) leaves out what the host provides,
    e.g. Kafka's own jars in a Connect plugin directory.
    """
    if complete(target):
        return target
    if shutil.which("mvn") is None:
        raise MavenError(f"{target} is not resolved yet and Maven (`mvn`) is missing")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be resolving it now
        if not complete(target):
            _resolve(target, coordinates, exclude_groups)
    return target


def _resolve(target: Path, coordinates: list[str], exclude_groups: str) -> None:
    deps = "".join(DEPENDENCY.format(*c.split(":")) for c in coordinates)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        (Path(work) / "pom.xml").write_text(POM.format(dependencies=deps))
        libs = Path(work) / "libs"
        argv = ["mvn", "-B", "-q", f"{DEPENDENCY_PLUGIN}:copy-dependencies"]
        argv += ["-DincludeScope=runtime", f"-DoutputDirectory={libs}"]
        if exclude_groups:
            argv.append(f"-DexcludeGroupIds={exclude_groups}")
        done = subprocess.run(
            argv, cwd=work, capture_output=True, text=True, timeout=900
        )
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-20:]
            raise MavenError("mvn failed:\n" + "\n".join(tail))
        (libs / ".complete").write_text("\n".join(coordinates) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        libs.rename(target)
