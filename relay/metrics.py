"""The relay's Prometheus metrics, served by ``run_relay --metrics-port``.

Counters, histograms and the leadership gauge count what this relay process did.
``OutboxCollector`` reads the backlog and the leases from the outbox tables at
scrape time; ``run_relay`` registers it beside them. (The web app's /metrics
computes its own ``healthcare_outbox_*`` figures.)
"""

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

PUBLISHED = Counter(
    "outbox_relay_published_events",
    "Events the broker acknowledged and the relay marked published.",
    ["shard"],
)
FAILED_ATTEMPTS = Counter(
    "outbox_relay_failed_attempts",
    "Failed publish attempts (event: the event backs off; broker: the batch is retried; "
    "fenced: another relay took the shard over).",
    ["reason"],
)
BATCH_SIZE = Histogram(
    "outbox_relay_batch_size",
    "Events per published batch.",
    buckets=(1, 5, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 20000),
)
BATCH_DURATION = Histogram(
    "outbox_relay_batch_duration_seconds",
    "From producing a claimed batch to the broker's acknowledgement of its transaction.",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SHARD_LEADER = Gauge(
    "outbox_relay_shard_leader",
    "1 while this relay leads the shard and publishes it.",
    ["shard"],
)


class OutboxCollector:
    """Backlog and leases, read from the database at scrape time."""

    def collect(self):
        from relay.models import OutboxEvent, ShardLease

        pending = OutboxEvent.objects.pending().aggregate(
            n=Count("seq"), oldest=Min("created_at")
        )
        yield GaugeMetricFamily(
            "outbox_pending_events",
            "Outbox rows not yet published.",
            value=pending["n"],
        )
        age = (
            (timezone.now() - pending["oldest"]).total_seconds()
            if pending["oldest"]
            else 0.0
        )
        yield GaugeMetricFamily(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest outbox row not yet published (0 when none).",
            value=max(0.0, age),
        )
        epochs = GaugeMetricFamily(
            "outbox_shard_lease_epoch",
            "Leadership epoch of each shard (it grows by one at every takeover).",
            labels=["shard", "holder"],
        )
        for lease in ShardLease.objects.all():
            epochs.add_metric([str(lease.shard), lease.holder], lease.epoch)
        yield epochs


_registered = set()


def register_outbox_collector(registry=REGISTRY) -> None:
    """Export the backlog metrics from this process (once per registry)."""
    if id(registry) not in _registered:
        registry.register(OutboxCollector())
        _registered.add(id(registry))
