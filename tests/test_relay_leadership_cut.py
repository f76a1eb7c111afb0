"""The relay's leadership connection cut again and again while it idles (chaos issue 11).

Found by the chaos suite: a cut seen by wait() and the reconnect in the next
maintain() made the relay take its shards back and give them up in one turn, and it
died of a KeyError.
"""

import time

import pytest
from django.db import connection

from relay.models import OutboxEvent
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
def test_relay_survives_its_leadership_connection_cut_while_idle(
    broker, topic, start_process
):
    relay = start_process("run_relay", "--shards", "4")
    assert relay.wait_for_output("producer ready")
    for i in range(12):
        time.sleep(0.7 + 0.13 * i)  # idle, at another point of its 1 s acquire cycle
        cut_control_connection()
        if relay.proc.poll() is not None:
            break
    time.sleep(3)
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
