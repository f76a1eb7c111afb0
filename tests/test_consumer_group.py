"""Scale-out: three consumer processes share the three partitions of the topic."""

import re
import threading

import pytest

from notifications.models import ProcessedEvent
from tests.conftest import wait_until
from tests.consumer_kit import (
    assert_exactly_once,
    people,  # noqa: F401  (fixture)
    produce_slowly,
    stream_of,
)
from tests.kafka_utils import read_topic

pytestmark = pytest.mark.django_db(transaction=True)


def test_three_consumers_share_the_partitions_and_one_leaving_loses_nothing(
    broker, topic, start_process, people
):
    records = stream_of(people, 3000)
    args = ("run_consumer", "--batch-size", "50", "--no-email")
    a = start_process(*args, name="a")
    assert a.wait_for_output("consumer: assigned", timeout=30), a.output
    producer = threading.Thread(
        target=produce_slowly, args=(broker.address, topic, records), kwargs={"per_second": 200}
    )
    producer.start()
    try:
        b = start_process(*args, name="b")
        c = start_process(*args, name="c")
        for joined in (b, c):
            assert joined.wait_for_output("consumer: assigned", timeout=40), joined.output
        # Each of the three has a partition; b stops in the middle of the stream, once
        # it has applied some of it.
        assert wait_until(lambda: "NOTIFICATION: " in b.output, timeout=20), b.output
        assert b.terminate() == 0, b.output
        assert "revoked" in b.output
    finally:
        producer.join()

    done = wait_until(lambda: ProcessedEvent.objects.count() == len(records), timeout=60)
    assert done, a.output + c.output
    assert a.terminate() == 0 and c.terminate() == 0
    assert_exactly_once(records)
    # every notification was created (and logged) by exactly one of the three
    logged = sum(p.output.count("NOTIFICATION: ") for p in (a, b, c))
    assert logged == 2 * len(records)
    for p in (a, b, c):
        assert int(re.search(r"processed (\d+) records", p.output).group(1)) > 0
    assert read_topic(broker.address, f"{topic}.dlq", expect=1, timeout=2) == []
