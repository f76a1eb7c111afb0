"""The relay's leadership connection cut again and again while it idles (chaos issue 11).

Found by the chaos suite: a cut seen by wait() and the reconnect in the next
maintain() made the relay take its shards back and give them up in one turn, and it
died of a KeyError.
"""

import os
import time

import pytest
from django.db import connection

from relay.leadership import PostgresLeadership
from relay.models import OutboxEvent, ShardLease
from relay.store import PostgresStore
from tests.conftest import wait_until
from tests.kafka_utils import read_topic
from tests.relay_support import (
    assert_complete_and_ordered,
    enqueue_events,
    event_ids,
    make_events,
    new_keys,
)

pytestmark = pytest.mark.django_db(transaction=True)


def control_connections(action: str = "count(*)") -> int:
    """How many relay control connections there are (or, with the action
    ``count(pg_terminate_backend(pid))``, were cut)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {action} FROM pg_stat_activity "
            "WHERE application_name = 'outbox-relay-control' "
            "AND datname = current_database()"
        )
        return cursor.fetchone()[0]


def cut_control_connection() -> int:
    return control_connections("count(pg_terminate_backend(pid))")


@pytest.mark.postgres_only
def test_shards_lost_while_waiting_and_taken_back_at_once_are_acquired_not_lost():
    store = PostgresStore("outbox-relay-test")
    leadership = PostgresLeadership(
        shard_count=4, store=store, lease_timeout=5, holder="cut"
    )
    try:
        acquired, lost = leadership.maintain()
        assert (sorted(acquired), lost) == ([0, 1, 2, 3], [])
        epochs = dict(leadership.held)
        cut_control_connection()
        r, w = os.pipe()
        try:  # wait() sees the cut (once the backend has gone): every shard lost
            assert wait_until(lambda: leadership.wait(0.2, r) or not leadership.held)
        finally:
            os.close(r), os.close(w)

        time.sleep(leadership.acquire_interval)  # its next try for free shards is due
        acquired, lost = leadership.maintain()  # reconnects and takes them back

        assert (sorted(acquired), lost) == ([0, 1, 2, 3], [])
        assert leadership.held == {s: e + 1 for s, e in epochs.items()}
        assert dict(ShardLease.objects.values_list("shard", "epoch")) == leadership.held
        assert leadership.maintain() == ([], [])
    finally:
        leadership.close()
        store.close()


@pytest.mark.postgres_only
def test_relay_survives_its_leadership_connection_cut_while_idle(
    broker, topic, start_process
):
    relay = start_process("run_relay", "--shards", "4")
    assert relay.wait_for_output("producer ready")
    cuts, deadline = 0, time.monotonic() + 60
    while cuts < 8 and relay.proc.poll() is None and time.monotonic() < deadline:
        # each cut once the relay is connected again, at another point of its 1 s
        # acquire cycle (a backend just cut may still be listed: then cut again)
        connected = wait_until(lambda: control_connections() > 0, timeout=10)
        assert connected, relay.output[-3000:]
        time.sleep(0.1 + 0.11 * cuts)
        cuts += cut_control_connection()
    time.sleep(2)
    assert relay.proc.poll() is None, relay.output[-3000:]
    assert cuts >= 8
    assert "KeyError" not in relay.output

    keys = new_keys(8)
    enqueue_events(make_events(keys, 3))
    assert wait_until(lambda: not OutboxEvent.objects.pending().exists(), timeout=30), (
        relay.output[-3000:]
    )
    records = read_topic(broker.address, topic, expect=24)
    ids = event_ids(records)
    assert len(ids) == len(set(ids)) == 24, "each event published exactly once"
    assert_complete_and_ordered(records)
    assert relay.terminate() == 0
