"""Prometheus alert rules under deploy/: loaded by the compose Prometheus, valid,
and written against metrics the code really exports.

promtool checks the file when it is installed; otherwise the rules are parsed and
every metric name in their expressions must be defined somewhere in the code.
"""

import re
import shutil
import subprocess

import yaml

from tests.conftest import ROOT

RULES = ROOT / "deploy" / "prometheus-alerts.yml"
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
PROMQL_WORDS = set(
    "sum max min avg count by without on ignoring and or unless increase rate irate"
    " absent max_over_time min_over_time avg_over_time histogram_quantile time up"
    " job le shard topic partition bool offset".split()
)
REQUIRED = {
    "OutboxOldestPendingTooOld": "outbox_oldest_pending_age_seconds",
    "ConsumerLagHigh": "notifications_consumer_lag",
    "DeadLettersGrowing": "notifications_consumer_dead_letters",
    "OutboxShardWithoutLeader": "outbox_relay_shard_leader",
}


def rules() -> list[dict]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def metric_names_in_code() -> set[str]:
    """The first argument of every Counter/Gauge/Histogram/GaugeMetricFamily."""
    pattern = re.compile(
        r"(?:Counter|Gauge|Histogram|Summary|GaugeMetricFamily|CounterMetricFamily)"
        r"\(\s*\"([a-z_:][a-z0-9_:]*)\""
    )
    names = set()
    for path in ROOT.glob("*/**/*.py"):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        names |= set(pattern.findall(path.read_text(errors="replace")))
    return names


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL_WORDS}


def base_name(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_compose_prometheus_loads_the_alert_rules():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus-alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_alert_rules_cover_backlog_lag_dead_letters_and_leaderless_shards():
    by_name = {rule["alert"]: rule for rule in rules()}
    for alert, metric in REQUIRED.items():
        assert metric in by_name[alert]["expr"], alert
    for rule in by_name.values():
        assert rule["labels"]["severity"] in ("page", "warn")
        assert rule["annotations"]["summary"]


def test_alert_expressions_are_valid_and_use_metrics_the_code_exports():
    exported = metric_names_in_code()
    assert "outbox_relay_shard_leader" in exported  # the scan finds the metrics
    for rule in rules():
        unknown = {
            n for n in metric_names(rule["expr"]) if base_name(n) not in exported
        }
        assert not unknown, f"{rule['alert']}: no such metric in the code: {unknown}"
    promtool = shutil.which("promtool")
    if promtool:  # PromQL's own grammar check, where it is installed
        result = subprocess.run(
            [promtool, "check", "rules", str(RULES)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
