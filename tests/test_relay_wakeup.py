"""The relay is woken by the outbox insert itself (a trigger's NOTIFY), not by polling."""

import time

import pytest

from relay.models import OutboxEvent
from tests.conftest import wait_until
from tests.relay_support import enqueue_events, make_events, new_keys

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def test_insert_wakes_an_idle_relay_long_before_its_poll_interval(start_process):
    relay = start_process("run_relay", env={"OUTBOX_POLL_INTERVAL_MS": "60000"})
    enqueue_events(make_events(new_keys(1), 1))
    assert wait_until(lambda: OutboxEvent.objects.published().exists(), timeout=30)
    # Now idle: its next poll is a minute away, so only the NOTIFY can wake it.
    time.sleep(1)
    enqueue_events(make_events(new_keys(1), 1))
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=20), (
        f"not woken within 20 s of the commit: {relay.output}"
    )
    assert relay.terminate() == 0
