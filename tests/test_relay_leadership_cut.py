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


def cut_control_connection() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'outbox-relay-control' "
            "AND datname = current_database()"
        )
        return cursor.fetchone()[0]


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
    for i in range(8):  # cuts 0.45 s to 1.64 s apart: at 8 points of its 1 s cycle
        time.sleep(0.45 + 0.17 * i)  # idle, at another point of its acquire cycle
        cut_control_connection()
        if relay.proc.poll() is not None:
            break
    time.sleep(2)
    assert relay.proc.poll() is None, relay.output[-3000:]
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
