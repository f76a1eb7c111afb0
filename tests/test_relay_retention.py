"""Retention (outbox_purge, and the relay's own purge) and replay (outbox_replay)."""

from datetime import time, timedelta
from io import StringIO

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from appointments.services import appointment_book
from notifications.models import Notification
from relay.models import OutboxEvent
from tests.conftest import wait_until
from tests.kafka_utils import read_topic
from tests.test_flow import next_weekday
from tests.relay_support import (
    assert_complete_and_ordered,
    enqueue_events,
    make_events,
    new_keys,
    run_relay_once,
)

pytestmark = pytest.mark.django_db(transaction=True)


def outbox_with_history():
    """25 published 8 days ago, 3 published just now, 2 pending for 8 days."""
    enqueue_events(make_events(new_keys(30), 1))
    seqs = list(OutboxEvent.objects.order_by("seq").values_list("seq", flat=True))
    old = timezone.now() - timedelta(days=8)
    OutboxEvent.objects.filter(seq__in=seqs[:25]).update(
        created_at=old, published_at=old
    )
    OutboxEvent.objects.filter(seq__in=seqs[25:28]).update(published_at=timezone.now())
    OutboxEvent.objects.filter(seq__in=seqs[28:]).update(created_at=old)
    return seqs


def test_outbox_purge_deletes_published_rows_past_retention_in_bounded_batches():
    seqs = outbox_with_history()
    out = StringIO()
    call_command("outbox_purge", "--dry-run", stdout=out)
    assert "would purge 25 published events older than" in out.getvalue()
    assert OutboxEvent.objects.count() == 30

    out = StringIO()
    with CaptureQueriesContext(connection) as queries:
        call_command(
            "outbox_purge", "--batch-size", "10", stdout=out, stderr=StringIO()
        )
    assert "purged 25 published events" in out.getvalue()
    deletes = [q for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3, "three transactions of at most 10 rows"
    assert sorted(OutboxEvent.objects.values_list("seq", flat=True)) == seqs[25:]


def test_outbox_purge_rejects_a_malformed_retention():
    with pytest.raises(CommandError, match="--older-than"):
        call_command("outbox_purge", "--older-than", "a week")


def test_relay_purges_expired_rows_by_itself(broker, topic):
    seqs = outbox_with_history()

    run_relay_once()

    assert sorted(OutboxEvent.objects.values_list("seq", flat=True)) == seqs[25:]
    assert not OutboxEvent.objects.pending().exists(), (
        "the old pending rows were published"
    )


def consumed_past(brokers: str, group: str, records) -> bool:
    """Whether the group has committed offsets beyond every one of these records."""
    admin = AdminClient({"bootstrap.servers": brokers})
    [future] = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)]
    ).values()
    committed = {tp.partition: tp.offset for tp in future.result().topic_partitions}
    return all(committed.get(r.partition(), -1) > r.offset() for r in records)


def test_outbox_replay_republishes_a_range_in_order_and_consumers_skip_duplicates(
    patient, doctor, broker, topic, start_process, proc_env
):
    when = next_weekday()
    appointments = [
        appointment_book(
            patient=patient, doctor=doctor, date=when, time_slot=time(9 + i)
        )
        for i in range(3)
    ]
    relay = start_process("run_relay")
    consumer = start_process("run_consumer")
    assert wait_until(lambda: Notification.objects.count() == 6, timeout=40), (
        consumer.output
    )

    out = StringIO()
    call_command(
        "outbox_replay",
        "--since",
        "1h",
        "--aggregate-id",
        str(appointments[0].id),
        "--dry-run",
        stdout=out,
    )
    assert "would republish 1 events" in out.getvalue()
    out = StringIO()
    call_command(
        "outbox_replay",
        "--since",
        "1h",
        "--event-type",
        "appointment.cancelled",
        "--dry-run",
        stdout=out,
    )
    assert "would republish 0 events" in out.getvalue()
    assert OutboxEvent.objects.pending().count() == 0

    out, progress = StringIO(), StringIO()
    call_command("outbox_replay", "--since", "1h", stdout=out, stderr=progress)
    assert (
        "queued 3 events" in out.getvalue() and "republished 3 events" in out.getvalue()
    )
    assert "republished [" in progress.getvalue()

    records = read_topic(broker.address, topic, expect=6)
    assert len(records) == 6
    assert_complete_and_ordered(records)
    group = proc_env["CONSUMER_GROUP"]
    assert wait_until(lambda: consumed_past(broker.address, group, records), timeout=20)
    assert Notification.objects.count() == 6, "duplicates were skipped"
    assert relay.terminate() == 0 and consumer.terminate() == 0


def test_outbox_replay_names_the_bad_option():
    with pytest.raises(CommandError, match="--since"):
        call_command("outbox_replay", "--since", "last tuesday")
    with pytest.raises(CommandError, match="--since must be before --until"):
        call_command("outbox_replay", "--since", "1h", "--until", "2h")
