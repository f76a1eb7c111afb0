"""A pending row someone else holds locked must not let its key's later event go first.

Found by the chaos suite: with ``FOR UPDATE SKIP LOCKED`` the claim passed over a
locked older row and published the same key's next event before it.
"""

import threading
import time

import psycopg
import pytest

from relay.models import OutboxEvent
from tests.conftest import database_url, wait_until
from tests.kafka_utils import read_topic
from tests.relay_support import (
    assert_complete_and_ordered,
    enqueue_events,
    make_events,
    new_keys,
    relay_in_thread,
)

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def test_a_locked_older_row_holds_back_the_later_events_of_its_key(broker, topic):
    key = new_keys(1)[0]
    first, second = make_events([key], 2)
    enqueue_events([first])
    locked, release = threading.Event(), threading.Event()

    def hold_the_row():
        with psycopg.connect(database_url()) as conn:  # another session, as an operator
            conn.execute(
                "SELECT seq FROM relay_outboxevent WHERE published_at IS NULL FOR UPDATE"
            )
            locked.set()
            release.wait(20)

    holder = threading.Thread(target=hold_the_row, daemon=True)
    holder.start()
    assert locked.wait(10)
    try:
        with relay_in_thread():
            warm = make_events(new_keys(1), 1)
            enqueue_events(warm)  # the relay is up and claiming once records are out
            assert read_topic(broker.address, topic, expect=1, timeout=60)
            enqueue_events([second])  # committed after the lock was taken: not locked
            time.sleep(2)  # several claims while the older row is locked
            release.set()
            holder.join(10)
            assert wait_until(
                lambda: not OutboxEvent.objects.pending().exists(), timeout=30
            )
    finally:
        release.set()
    records = read_topic(broker.address, topic, expect=3)
    assert_complete_and_ordered(records)
