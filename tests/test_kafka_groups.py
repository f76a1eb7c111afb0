"""A live three-member group on Apache Kafka: describe, member expiry, lag.

kafka_only: Tansu's DescribeGroups returns no members, a SIGKILLed member lingers
there until another one joins, and its ListOffsets answer is wrong (DESIGN.md
section 9), so neither the member columns, the expiry nor the broker's own lag
can be checked on it. The broker's numbers here are its ListOffsets high
watermark and its committed offsets; the records are written in transactions,
as the relay writes them, so commit markers take offsets between them.
"""

import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Producer

from devtools.process import free_port
from messaging.config import OpsError
from messaging.groups import group_describe
from notifications.models import ProcessedEvent
from tests.conftest import ROOT, wait_until
from tests.consumer_kit import (
    assert_exactly_once,
    committed_offsets,
    make_people,
    metric_value,
    produce,
    run_consumer,
    scrape,
    stream_of,
)
from tests.kafka_utils import end_offsets, table_rows

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka_only]

PARTITIONS = [0, 1, 2]


def produce_in_transactions(brokers: str, topic: str, records, per_txn=4) -> None:
    """Produce like the relay: a few records per transaction, each with its marker."""
    produce(brokers, topic, [])  # makes the topic and its dead-letter topic
    producer = Producer(
        {"bootstrap.servers": brokers, "transactional.id": f"t-{uuid.uuid4()}"}
    )
    producer.init_transactions(30)
    for start in range(0, len(records), per_txn):
        producer.begin_transaction()
        for r in records[start : start + per_txn]:
            producer.produce(
                topic, key=r["key"], value=r["value"], headers=r["headers"]
            )
        producer.commit_transaction(30)


def broker_lag(broker, group: str, topic: str) -> dict[int, int]:
    """The broker's own numbers: high watermark minus committed offset."""
    high = end_offsets(broker.address, topic, PARTITIONS, committed=False)
    committed = committed_offsets(broker.address, group, topic)
    return {p: high[p] - committed.get(p, 0) for p in PARTITIONS}


def describe_command(proc_env, group: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "kafka", "groups", "describe", group],
        cwd=ROOT, env=proc_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def assignment(group: str) -> dict[str, set[int]]:
    """member id -> partitions, from the broker's DescribeGroups."""
    try:
        d = group_describe(group=group, timeout=10)
    except OpsError:  # the group's coordinator is still loading it
        return {}
    owned: dict[str, set[int]] = {m[0]: set() for m in d.members}
    for p in d.partitions:
        if p.member is not None:
            owned[p.member].add(p.partition)
    return owned


def spread_over(group: str, members: int) -> bool:
    """Each of ``members`` members owns a partition and together they own all."""
    owned = assignment(group)
    return (
        len(owned) == members
        and all(owned.values())
        and set().union(*owned.values()) == set(PARTITIONS)
    )


def lag_metric(port: int) -> float:
    return metric_value(scrape(port), "notifications_consumer_lag")


def test_describe_lists_each_live_member_a_killed_one_expires_and_lag_is_the_brokers(
    broker, topic, proc_env, start_process, make_user
):
    people = make_people(make_user)
    group = f"group-{topic}"
    first = stream_of(people, 24)
    produce_in_transactions(broker.address, topic, first)
    ports = {name: free_port() for name in "abc"}
    members = {
        name: run_consumer(
            start_process, "--no-email", "--metrics-port", str(port), name=name
        )
        for name, port in ports.items()
    }
    assert wait_until(lambda: spread_over(group, 3), timeout=60), [
        m.output for m in members.values()
    ]
    assert wait_until(lambda: ProcessedEvent.objects.count() == 24, timeout=30)

    # Caught up, past the commit markers too: the broker, describe and every
    # member's gauge say 0 (committing "last record + 1" would leave 1 each).
    assert wait_until(lambda: set(broker_lag(broker, group, topic).values()) == {0})
    out = describe_command(proc_env, group)
    assert f"GROUP {group}  STATE Stable  MEMBERS 3" in out
    member_rows = table_rows(out, "MEMBER-ID")
    assert len(member_rows) == 3
    by_member = {}
    for member_id, client_id, host, owned in member_rows:
        assert client_id == "healthcare" and host.endswith("127.0.0.1")
        by_member[member_id] = (client_id, host, owned)
    partition_rows = table_rows(out, "TOPIC")
    assert [r[:2] for r in partition_rows] == [[topic, str(p)] for p in PARTITIONS]
    for _, partition, current, end, lag, member_id, host, client_id in partition_rows:
        assert (client_id, host) == by_member[member_id][:2]
        assert f"({partition})" in by_member[member_id][2]
        assert current == end and lag == "0"
    assert wait_until(lambda: all(lag_metric(p) == 0 for p in ports.values()))

    # SIGKILL one member: it sends no LeaveGroup, so it stays until its session
    # (6 s) expires; then the other two own every partition.
    killed = members.pop("b")
    killed.proc.send_signal(signal.SIGKILL)
    killed.proc.wait(10)
    killed_at = time.monotonic()
    assert len(assignment(group)) == 3, "gone before its session timed out"
    assert wait_until(lambda: spread_over(group, 2), timeout=30)
    expired_in = time.monotonic() - killed_at
    assert 3.0 <= expired_in <= 6.0 + 10.0, expired_in
    print(f"killed member expired and its partitions moved in {expired_in:.1f} s")

    more = stream_of(people, 24)
    produce_in_transactions(broker.address, topic, more)
    assert wait_until(lambda: ProcessedEvent.objects.count() == 48, timeout=40)
    assert_exactly_once(first + more)
    for m in members.values():
        assert m.terminate() == 0, m.output

    # A backlog behind a stopped group: describe's lag is the broker's, markers
    # included, partition by partition.
    produce_in_transactions(broker.address, topic, stream_of(people, 15), per_txn=3)
    expected = broker_lag(broker, group, topic)
    assert sum(expected.values()) > 15  # the records and their commit markers
    out = describe_command(proc_env, group)
    rows = table_rows(out, "TOPIC")
    assert {int(r[1]): int(r[4]) for r in rows} == expected
    assert re.search(rf"TOTAL LAG {sum(expected.values())}\b", out)
