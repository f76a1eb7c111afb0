"""Pure logic of the relay: backoff, error policy, fair share, ids, buckets, durations."""

import time

import pytest
from confluent_kafka import KafkaError

from core.env import parse_duration
from relay.events import bucket_for
from relay.leadership import fair_share
from relay.models import BUCKETS, uuid7
from relay.publisher import DeliveryErrorPolicy, Outcome
from relay.store import event_backoff


def test_backoff_doubles_from_half_a_second_up_to_the_cap():
    assert [event_backoff(n, 5) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]


@pytest.mark.parametrize(
    "code, outcome",
    [
        (KafkaError.MSG_SIZE_TOO_LARGE, Outcome.RETRY_EVENT),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, Outcome.RETRY_EVENT),
        (KafkaError._MSG_TIMED_OUT, Outcome.RETRY_BATCH),
        (KafkaError._TRANSPORT, Outcome.RETRY_BATCH),
        (KafkaError._ALL_BROKERS_DOWN, Outcome.RETRY_BATCH),
        (KafkaError.PRODUCER_FENCED, Outcome.FENCED),
        (KafkaError.INVALID_PRODUCER_EPOCH, Outcome.FENCED),
    ],
)
def test_delivery_error_policy(code, outcome):
    assert DeliveryErrorPolicy.classify(KafkaError(code)) is outcome


def test_fair_share_spreads_shards_over_relays():
    assert fair_share(4, 1) == 4
    assert fair_share(4, 2) == 2
    assert fair_share(4, 3) == 2
    assert fair_share(1, 3) == 1
    assert fair_share(2, 0) == 2


def test_uuid7_is_version_7_and_ordered_by_time():
    first = uuid7()
    time.sleep(0.002)
    second = uuid7()
    assert first.version == 7 and first.variant == "specified in RFC 4122"
    assert first < second
    assert abs((first.int >> 80) - time.time() * 1000) < 5000


def test_bucket_is_stable_for_a_key():
    assert bucket_for("3f1c9d8e-0000-4000-8000-000000000001") == bucket_for(
        "3f1c9d8e-0000-4000-8000-000000000001"
    )
    assert bucket_for("a") == 3904355907 % BUCKETS  # zlib.crc32(b"a")


@pytest.mark.parametrize(
    "raw, seconds",
    [
        ("7d", 604800),
        ("36h", 129600),
        ("90m", 5400),
        ("30s", 30),
        ("250ms", 0.25),
        ("42", 42),
    ],
)
def test_parse_duration(raw, seconds):
    assert parse_duration(raw) == seconds


def test_parse_duration_rejects_garbage():
    with pytest.raises(ValueError):
        parse_duration("a week")
