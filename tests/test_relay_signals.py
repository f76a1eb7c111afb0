"""SIGTERM while draining: the batches in hand are committed and marked, exit status 0."""

import signal
import time

import pytest

from relay.models import OutboxEvent
from tests.conftest import wait_until
from tests.kafka_utils import headers_of, read_topic
from tests.relay_support import (
    assert_complete_and_ordered,
    enqueue_events,
    make_events,
    new_keys,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_sigterm_mid_drain_commits_and_marks_what_is_in_flight_and_exits_zero(
    broker, topic, start_process
):
    keys = new_keys(500)
    enqueue_events(make_events(keys, 40))  # 20,000 events
    total = OutboxEvent.objects.count()
    # Small batches: one Kafka transaction per 20 events keeps it draining for a while.
    relay = start_process("run_relay", env={"OUTBOX_BATCH_SIZE": "20"})
    assert wait_until(lambda: OutboxEvent.objects.published().exists(), timeout=30), (
        relay.output
    )

    relay.proc.send_signal(signal.SIGTERM)
    sent_at = time.monotonic()
    assert relay.proc.wait(10) == 0
    assert time.monotonic() - sent_at < 10
    marked = set(OutboxEvent.objects.published().values_list("event_id", flat=True))
    assert 0 < len(marked) < total, "stopped mid-drain"
    records = read_topic(broker.address, topic, expect=len(marked))
    # Everything it sent was marked before it exited: nothing will go out twice.
    assert {headers_of(r)["ce_id"] for r in records} == {str(e) for e in marked}

    again = start_process("run_relay")
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=60), (
        again.output
    )
    records = read_topic(broker.address, topic, expect=total, timeout=60)
    assert len(records) == total, "each event exactly once across the restart"
    assert_complete_and_ordered(records)
    assert again.terminate() == 0
