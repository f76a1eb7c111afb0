"""run_consumer --reset-offsets earliest|latest|<ISO datetime> [--force].

Apache Kafka answers ListOffsets exactly, so the tests produce many records per
batch there. Tansu answers with a count of record batches instead of an offset
(DESIGN.md section 9): on Tansu the tests produce one record per request, so that
batches and records coincide and its answer is the true offset; that still checks
our side (the request, the arithmetic, the commit) without depending on the bug.
"""

import re
import signal
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from confluent_kafka.admin import AdminClient
from django.core.management import CommandError, call_command

from notifications.models import Notification, ProcessedEvent
from tests.conftest import wait_until
from tests.consumer_kit import (
    committed_offsets,
    make_people,
    produce,
    run_consumer,
    stream_of,
)
from tests.kafka_utils import read_topic

pytestmark = pytest.mark.django_db(transaction=True)

CONSUME = ("--batch-size", "10", "--no-email")


def reset(start_process, target: str, *extra: str):
    proc = run_consumer(start_process, "--reset-offsets", target, *extra, name="reset")
    proc.proc.wait(60)
    return proc


def batches_are_records(broker) -> bool:
    """Tansu's ListOffsets counts batches: produce one record per batch there."""
    return broker.kind == "tansu"


def live_members(broker, group: str) -> int:
    admin = AdminClient({"bootstrap.servers": broker.address})
    return len(admin.describe_consumer_groups([group])[group].result(10).members)


def partition_counts(broker, topic, records: list[dict]) -> dict[int, int]:
    """How many of ``records`` each partition of the topic holds."""
    values = {r["value"] for r in records}
    found = read_topic(broker.address, topic, expect=len(records))
    return dict(Counter(r.partition() for r in found if r.value() in values))


def test_reset_is_refused_while_the_group_consumes_and_earliest_rereads_everything_once(
    broker, topic, start_process, make_user
):
    people = make_people(make_user)
    records = stream_of(people, 30)
    produce(broker.address, topic, records)
    group = f"group-{topic}"
    first = run_consumer(start_process, *CONSUME)
    assert wait_until(lambda: ProcessedEvent.objects.count() == 30, timeout=30), (
        first.output
    )
    assert wait_until(
        lambda: sum(committed_offsets(broker.address, group, topic).values()) == 30
    )

    refused = reset(start_process, "earliest")
    assert refused.proc.returncode == 1
    assert f"group {group} has" in refused.output and "live member" in refused.output
    assert sum(committed_offsets(broker.address, group, topic).values()) == 30

    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    if broker.kind == "kafka":
        # A SIGKILLed member expires after its session timeout (6 s here); then the
        # group is empty and a plain reset goes ahead.
        assert wait_until(lambda: live_members(broker, group) == 0, timeout=20)
        forced = reset(start_process, "earliest")
    else:
        # Tansu keeps a killed member until another one joins: still refused;
        # --force joins, takes the partitions over and commits.
        assert reset(start_process, "earliest").proc.returncode == 1
        forced = reset(start_process, "earliest", "--force")
    assert forced.proc.returncode == 0, forced.output
    assert f"group {group}: offsets reset to earliest" in forced.output
    for partition, count in partition_counts(broker, topic, records).items():
        assert re.search(rf"{topic}\s+{partition}\s+{count}\s+0\b", forced.output), (
            forced.output
        )
    assert committed_offsets(broker.address, group, topic) == {p: 0 for p in range(3)}

    # The group reads the topic again from the start; the inbox skips every event.
    second = run_consumer(start_process, *CONSUME)
    assert wait_until(
        lambda: sum(committed_offsets(broker.address, group, topic).values()) == 30,
        timeout=30,
    ), second.output
    assert second.terminate() == 0
    skipped = sum(
        int(n) for n in re.findall(r"skipped (\d+) duplicate events", second.output)
    )
    assert skipped == 30
    assert "NOTIFICATION:" not in second.output
    assert Notification.objects.count() == 60


def test_reset_to_latest_skips_the_backlog(broker, topic, start_process, make_user):
    people = make_people(make_user)
    backlog = stream_of(people, 12)
    produce(broker.address, topic, backlog, one_per_request=batches_are_records(broker))
    counts = partition_counts(broker, topic, backlog)

    proc = reset(start_process, "latest")
    assert proc.proc.returncode == 0, proc.output
    group = f"group-{topic}"
    assert committed_offsets(broker.address, group, topic) == {
        p: counts.get(p, 0) for p in range(3)
    }

    consumer = run_consumer(start_process, *CONSUME)
    assert consumer.wait_for_output("consumer: assigned", timeout=30), consumer.output
    [fresh] = stream_of(people, 1)
    produce(broker.address, topic, [fresh], one_per_request=batches_are_records(broker))
    assert wait_until(lambda: ProcessedEvent.objects.count() == 1, timeout=20), (
        consumer.output
    )
    time.sleep(0.5)
    assert ProcessedEvent.objects.count() == 1
    assert consumer.terminate() == 0


def test_reset_to_a_time_starts_at_the_first_record_at_or_after_it(
    broker, topic, start_process, make_user
):
    people = make_people(make_user)
    # Enough records after the moment that every partition has some: for a partition
    # with none, Kafka answers "no offset" (we then take the end) but Tansu answers 0.
    before, after = stream_of(people, 9), stream_of(people, 30)
    one_each = batches_are_records(broker)
    produce(broker.address, topic, before, one_per_request=one_each)
    time.sleep(0.2)
    moment = datetime.now(UTC)
    time.sleep(0.2)
    produce(broker.address, topic, after, one_per_request=one_each)
    counts_before = partition_counts(broker, topic, before)

    proc = reset(start_process, moment.isoformat().replace("+00:00", "Z"))
    assert proc.proc.returncode == 0, proc.output
    committed = committed_offsets(broker.address, f"group-{topic}", topic)
    assert committed == {p: counts_before.get(p, 0) for p in range(3)}


def test_reset_offsets_rejects_a_target_it_cannot_read():
    with pytest.raises(
        CommandError, match="'yesterday' is not 'earliest', 'latest' or an ISO"
    ):
        call_command("run_consumer", reset_offsets="yesterday")
