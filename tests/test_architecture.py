"""The layout's arrows (DESIGN.md section 3), checked on every module's imports.

appointments -> relay -> messaging <- notifications; core is used by all and uses
no app; nothing imports monitoring but healthcare/urls.py; no app imports the
project package (healthcare); relay and messaging read no consumer setting;
production code imports none of devtools, tests, bench.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> the project packages it may import (besides itself)
ALLOWED = {
    "core": set(),
    "messaging": {"core"},
    "relay": {"core", "messaging"},
    "appointments": {"core", "relay"},
    "notifications": {"core", "messaging"},
    "monitoring": {"core", "messaging", "relay", "appointments", "notifications"},
    "healthcare": {"core", "messaging", "relay", "appointments", "notifications"},
}
# The one module allowed to import monitoring: the URL conf wires its views.
MONITORING_WIRING = {"healthcare/urls.py"}
PROJECT = set(ALLOWED) | {"devtools", "tests", "bench", "scripts"}
NO_CONSUMER_SETTINGS = {"relay", "messaging"}


def imported_packages(source: str, package: str) -> set[str]:
    """The top-level project packages a module's source imports, lazily or not."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package] if node.level else [node.module or ""]
        else:
            continue
        found |= {n.split(".")[0] for n in names} & PROJECT
    return found - {package}


def reads_consumer_settings(source: str) -> bool:
    """``settings.CONSUMER`` anywhere in the source."""
    return any(
        isinstance(node, ast.Attribute)
        and node.attr == "CONSUMER"
        and isinstance(node.value, ast.Name)
        and node.value.id == "settings"
        for node in ast.walk(ast.parse(source))
    )


def violations(package: str, rel: str, source: str) -> list[str]:
    allowed = ALLOWED[package] | ({"monitoring"} if rel in MONITORING_WIRING else set())
    found = [
        f"{rel} imports {other}"
        for other in sorted(imported_packages(source, package) - allowed)
    ]
    if package in NO_CONSUMER_SETTINGS and reads_consumer_settings(source):
        found.append(f"{rel} reads settings.CONSUMER")
    return found


def modules():
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path.relative_to(ROOT).as_posix(), path.read_text()


def test_every_package_exists_and_is_scanned():
    scanned = {package for package, _, _ in modules()}
    assert scanned == set(ALLOWED)


def test_imports_follow_the_arrows():
    found = [
        v
        for package, rel, source in modules()
        for v in violations(package, rel, source)
    ]
    assert found == []


@pytest.mark.parametrize(
    ("package", "rel", "source", "expected"),
    [
        (
            "relay",
            "relay/x.py",
            "from notifications.models import X",
            ["imports notifications"],
        ),
        (
            "messaging",
            "messaging/x.py",
            "def f():\n    import relay.kafka",
            ["imports relay"],
        ),
        (
            "core",
            "core/x.py",
            "from appointments import models",
            ["imports appointments"],
        ),
        (
            "notifications",
            "notifications/x.py",
            "from healthcare.logging import x",
            ["imports healthcare"],
        ),
        (
            "appointments",
            "appointments/x.py",
            "import monitoring.health",
            ["imports monitoring"],
        ),
        (
            "healthcare",
            "healthcare/settings.py",
            "from monitoring import x",
            ["imports monitoring"],
        ),
        ("relay", "relay/x.py", "from tests.broker import Broker", ["imports tests"]),
        (
            "messaging",
            "messaging/x.py",
            "t = settings.CONSUMER['TOPICS']",
            ["reads settings.CONSUMER"],
        ),
        ("healthcare", "healthcare/urls.py", "from monitoring import health", []),
        ("monitoring", "monitoring/x.py", "from relay.models import OutboxEvent", []),
        (
            "relay",
            "relay/x.py",
            "from . import models\nfrom messaging.config import c",
            [],
        ),
    ],
)
def test_the_check_sees_a_broken_arrow(package, rel, source, expected):
    assert [v.split(" ", 1)[1] for v in violations(package, rel, source)] == expected
