"""Scale-out: three consumer processes share the three partitions of the topic."""

import re
import threading

import pytest

from notifications.models import ProcessedEvent
from tests.conftest import wait_until
from tests.consumer_kit import (
    assert_exactly_once,
    make_people,
    produce_slowly,
    run_consumer,
    stream_of,
)
from tests.kafka_utils import read_topic

pytestmark = pytest.mark.django_db(transaction=True)


def test_three_consumers_share_the_partitions_and_one_leaving_or_joining_loses_nothing(
    broker, topic, start_process, make_user
):
    people = make_people(make_user)
    records = stream_of(people, 2400)

    def consumer(name):
        return run_consumer(
            start_process, "--batch-size", "20", "--no-email", name=name
        )

    a, b, c = consumer("a"), consumer("b"), consumer("c")
    for member in (a, b, c):
        assert member.wait_for_output("consumer: assigned", timeout=40), member.output
    producer = threading.Thread(
        target=produce_slowly,
        args=(broker.address, topic, records),
        kwargs={"per_second": 300},
    )
    producer.start()
    try:
        # b leaves in the middle of the stream, once it has applied some of it...
        assert wait_until(lambda: "NOTIFICATION: " in b.output, timeout=20), b.output
        assert b.terminate() == 0, b.output
        assert "revoked" in b.output
        # ...and a new member joins while the stream still flows.
        d = consumer("d")
        assert wait_until(lambda: "NOTIFICATION: " in d.output, timeout=30), d.output
    finally:
        producer.join()

    done = wait_until(
        lambda: ProcessedEvent.objects.count() == len(records), timeout=60
    )
    members = (a, b, c, d)
    assert done, "".join(m.output for m in members)
    assert all(m.terminate() == 0 for m in (a, c, d))
    assert_exactly_once(records)
    # every notification was created (and logged) by exactly one member
    assert sum(m.output.count("NOTIFICATION: ") for m in members) == 2 * len(records)
    for m in members:
        assert int(re.search(r"processed (\d+) records", m.output).group(1)) > 0
    assert read_topic(broker.address, f"{topic}.dlq", expect=0) == []
