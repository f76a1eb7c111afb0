"""The relay serves its metrics in the Prometheus text format (run_relay --metrics-port)."""

import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from relay.models import OutboxEvent
from tests.broker import free_port
from tests.conftest import wait_until
from tests.relay_support import enqueue_events, make_events, new_keys

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(port: int) -> dict:
    body = (
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        .read()
        .decode()
    )
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def test_relay_serves_backlog_throughput_and_leadership_metrics(
    broker, topic, start_process
):
    keys = new_keys(5)
    enqueue_events(make_events(keys, 1))
    # One event that waits for a retry: pending, and old.
    waiting = OutboxEvent.objects.order_by("seq").first()
    OutboxEvent.objects.filter(seq=waiting.seq).update(
        created_at=timezone.now() - timedelta(minutes=5),
        next_attempt_at=timezone.now() + timedelta(hours=1),
        attempts=3,
    )
    port = free_port()
    relay = start_process("run_relay", "--metrics-port", str(port))
    assert wait_until(lambda: OutboxEvent.objects.pending().count() == 1, timeout=20), (
        relay.output
    )

    metrics = scrape(port)
    assert metrics[("outbox_relay_published_events_total", (("shard", "0"),))] == 4
    assert metrics[("outbox_relay_shard_leader", (("shard", "0"),))] == 1
    assert metrics[("outbox_pending_events", ())] == 1
    assert metrics[("outbox_oldest_pending_age_seconds", ())] >= 300
    assert metrics[("outbox_relay_batch_size_count", ())] >= 1
    assert metrics[("outbox_relay_batch_duration_seconds_count", ())] >= 1
    assert any(name == "outbox_shard_lease_epoch" for name, _ in metrics)
    assert relay.terminate() == 0
