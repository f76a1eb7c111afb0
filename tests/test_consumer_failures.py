"""The consumer under failure: SIGKILL mid-batch, the database cut, SIGTERM mid-stream."""

import contextlib
import signal
import threading
import time

import psycopg
import pytest
from django.db import connection, transaction

from notifications.models import Notification, ProcessedEvent
from tests.conftest import wait_until
from tests.consumer_kit import (
    assert_exactly_once,
    committed_offsets,
    make_people,
    produce,
    produce_slowly,
    run_consumer,
    stream_of,
)
from tests.kafka_utils import read_topic

pytestmark = pytest.mark.django_db(transaction=True)


@contextlib.contextmanager
def inbox_locked():
    """Hold a lock that makes the consumer's next batch transaction wait."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            table = connection.ops.quote_name(ProcessedEvent._meta.db_table)
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        # SQLite: this IMMEDIATE transaction already holds the database's write lock.
        yield


def test_sigkill_mid_batch_then_restart_gives_exactly_one_notification_per_event(
    broker, topic, start_process, make_user
):
    people = make_people(make_user)
    records = stream_of(people, 2000)
    half = len(records) // 2
    produce(broker.address, topic, records[:half])
    args = ("--batch-size", "100", "--no-email")
    first = run_consumer(start_process, *args)
    assert wait_until(lambda: ProcessedEvent.objects.count() == half, timeout=40), (
        first.output
    )

    with inbox_locked():
        # The second half arrives while the inbox is locked: the consumer takes a
        # batch of it and waits inside its transaction (it can never finish first).
        produce(broker.address, topic, records[half:])
        before = ProcessedEvent.objects.count()
        if connection.vendor == "postgresql":
            assert wait_until(lambda: _backends_waiting_for_a_lock() > 0, timeout=10), (
                first.output
            )
        else:
            time.sleep(1)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
    assert before < len(records)

    second = run_consumer(start_process, *args)
    done = wait_until(
        lambda: ProcessedEvent.objects.count() == len(records), timeout=60
    )
    assert done, second.output
    assert_exactly_once(records)
    assert read_topic(broker.address, f"{topic}.dlq", expect=0) == []
    assert second.terminate() == 0


def _scalar(sql: str):
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def _backends_waiting_for_a_lock() -> int:
    return _scalar(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )


def test_sigterm_mid_stream_finishes_and_commits_the_batch_in_hand(
    broker, topic, start_process, make_user
):
    people = make_people(make_user)
    records = stream_of(people, 3000)
    produce(broker.address, topic, records)
    consumer = run_consumer(start_process, "--batch-size", "200", "--no-email")
    assert wait_until(lambda: ProcessedEvent.objects.count() >= 400, timeout=40), (
        consumer.output
    )

    consumer.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert consumer.proc.wait(10) == 0, consumer.output
    assert time.monotonic() - started < 10
    applied = ProcessedEvent.objects.count()
    # Everything applied is committed, and nothing beyond it.
    committed = committed_offsets(broker.address, f"group-{topic}", topic)
    assert sum(committed.values()) == applied, consumer.output
    assert Notification.objects.count() == 2 * applied


@pytest.mark.postgres_only
def test_a_lock_held_past_the_lock_timeout_is_retried_not_dead_lettered(
    broker, topic, start_process, make_user
):
    records = stream_of(make_people(make_user), 100)
    produce(broker.address, topic, records)
    with inbox_locked():
        consumer = run_consumer(start_process, "--no-email")
        assert wait_until(lambda: "lock timeout" in consumer.output, timeout=30), (
            consumer.output
        )
        assert ProcessedEvent.objects.count() == 0
    done = wait_until(
        lambda: ProcessedEvent.objects.count() == len(records), timeout=30
    )
    assert done, consumer.output
    assert_exactly_once(records)
    assert read_topic(broker.address, f"{topic}.dlq", expect=0) == []
    assert consumer.terminate() == 0


@pytest.mark.postgres_only
def test_database_cut_mid_stream_loses_nothing_and_moves_no_offset_while_down(
    broker, topic, start_process, make_user
):
    people = make_people(make_user)
    records = stream_of(people, 1200)
    consumer = run_consumer(start_process, "--batch-size", "50", "--no-email")
    assert consumer.wait_for_output("consumer: assigned", timeout=30), consumer.output

    producer = threading.Thread(
        target=produce_slowly, args=(broker.address, topic, records)
    )
    producer.start()
    try:
        # Connections terminated under the consumer's feet, a few times.
        for _ in range(3):
            assert wait_until(lambda: _terminate_others() > 0, timeout=10)
            time.sleep(0.3)
        # Then the database refuses every connection for a while.
        with _database_down():
            time.sleep(1)
            applied = ProcessedEvent.objects.count()
            offsets = committed_offsets(broker.address, f"group-{topic}", topic)
            time.sleep(2)
            assert ProcessedEvent.objects.count() == applied
            assert committed_offsets(broker.address, f"group-{topic}", topic) == offsets
            assert sum(offsets.values()) <= applied
            assert consumer.proc.poll() is None
    finally:
        producer.join()

    done = wait_until(
        lambda: ProcessedEvent.objects.count() == len(records), timeout=60
    )
    assert done, consumer.output
    assert "database unavailable" in consumer.output
    assert_exactly_once(records)
    assert read_topic(broker.address, f"{topic}.dlq", expect=0) == []
    assert consumer.terminate() == 0


def _terminate_others() -> int:
    """Terminate every other connection to the test database; return how many."""
    return _scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )


@contextlib.contextmanager
def _database_down():
    """No new connection to the test database; existing ones (but ours) terminated."""
    name = connection.settings_dict["NAME"]
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params["dbname"] = "postgres"
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            _terminate_others()
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
