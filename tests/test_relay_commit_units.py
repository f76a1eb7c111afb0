"""The shard publisher's commit loop (pure logic, a fake producer; issue 11).

Found by the chaos suite on Tansu: a fenced producer's commit went on being retried
until the whole deadline (message timeout + 5 s) had passed, stalling its shard. The
fencing itself is proven on real brokers in test_relay_leadership.py.
"""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from relay.publisher import ShardPublisher


class FakeProducer:
    """commit_transaction raises the given errors in turn, then succeeds."""

    def __init__(self, *errors: KafkaError):
        self.errors = list(errors)
        self.commits = 0
        self.aborts = 0

    def commit_transaction(self, timeout):
        self.commits += 1
        if self.errors:
            raise KafkaException(self.errors.pop(0))

    def abort_transaction(self, timeout):
        self.aborts += 1


def publisher_with(producer: FakeProducer) -> ShardPublisher:
    publisher = ShardPublisher.__new__(ShardPublisher)
    publisher.shard, publisher.producer, publisher.ready = 0, producer, True
    return publisher


@pytest.mark.parametrize(
    "error",
    [
        KafkaError(KafkaError._FENCED, "fenced", fatal=True, retriable=True),
        KafkaError(
            KafkaError._TIMED_OUT, "must abort", retriable=True, txn_requires_abort=True
        ),
    ],
    ids=["fatal", "requires-abort"],
)
def test_commit_fails_at_once_when_the_producer_cannot_commit(error):
    producer = FakeProducer(*[error] * 100)
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        publisher_with(producer).commit(deadline=started + 30)
    assert raised.value.args[0] is error
    assert time.monotonic() - started < 1
    assert (producer.commits, producer.aborts) == (1, 1)


def test_commit_retries_a_retriable_error_until_it_commits():
    timed_out = KafkaError(KafkaError._TIMED_OUT, "flush", retriable=True)
    producer = FakeProducer(timed_out, timed_out)
    publisher_with(producer).commit(deadline=time.monotonic() + 30)
    assert (producer.commits, producer.aborts) == (3, 0)


def test_commit_gives_up_a_retriable_error_at_the_deadline():
    timed_out = KafkaError(KafkaError._TIMED_OUT, "flush", retriable=True)
    producer = FakeProducer(*[timed_out] * 1000)
    with pytest.raises(KafkaException):
        publisher_with(producer).commit(deadline=time.monotonic() - 1)
    assert (producer.commits, producer.aborts) == (1, 1)


class FakeLane:
    """One lane's producer: counts the transactions begun on it."""

    def __init__(self):
        self.begun = 0

    def begin_transaction(self):
        self.begun += 1


def test_transactions_take_turns_over_the_lanes():
    lanes = [FakeLane(), FakeLane()]
    publisher = ShardPublisher.__new__(ShardPublisher)
    publisher.producers, publisher._lane = lanes, 0
    used = []
    for _ in range(4):
        publisher.begin()
        used.append(lanes.index(publisher.producer))
    assert used == [1, 0, 1, 0]
    assert [lane.begun for lane in lanes] == [2, 2]
