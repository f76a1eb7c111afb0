"""One transactional Kafka producer per shard, and the relay's delivery error policy.

Each shard's producer has a ``transactional.id`` of its own. A new leader's
``init_transactions()`` bumps the producer epoch, so the broker rejects anything a
stalled former leader of the shard still tries to send (it is fenced), and every
batch becomes visible to read_committed consumers all at once or not at all.
"""

import enum
import time
from functools import partial

from confluent_kafka import KafkaError, KafkaException, Producer
from django.conf import settings
from django.db import connection

from core.loops import produce
from messaging.config import producer_config
from relay.store import ClaimedRow


class Outcome(enum.Enum):
    RETRY_EVENT = "retry the event later (backoff); its key waits, other keys flow"
    RETRY_BATCH = "the broker is unavailable: retry the whole batch after a pause"
    FENCED = "another relay leads this shard now: stop publishing it"


class DeliveryErrorPolicy:
    """The relay's one error policy: what a Kafka error means for the events."""

    # The event itself cannot be written: back it off and hold its key.
    EVENT = {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._INVALID_ARG,
        KafkaError._BAD_MSG,
    }
    # Someone else holds the shard's transactional.id with a newer epoch.
    FENCED = {
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError._FENCED,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }

    @classmethod
    def classify(cls, error: KafkaError) -> Outcome:
        code = error.code()
        if code in cls.FENCED:
            return Outcome.FENCED
        if code in cls.EVENT:
            return Outcome.RETRY_EVENT
        return Outcome.RETRY_BATCH


def transactional_id(shard: int) -> str:
    """The shard's transactional.id: the same in every relay of this database."""
    prefix = settings.OUTBOX["TRANSACTIONAL_ID"] or (
        f"{settings.KAFKA['CLIENT_ID']}-outbox-{connection.settings_dict['NAME']}"
    )
    return f"{prefix}-shard-{shard}"


def shard_producer_settings(shard: int) -> dict:
    """What a shard's producer adds to the shared producer configuration."""
    return {
        "transactional.id": transactional_id(shard),
        "transaction.timeout.ms": settings.KAFKA["TRANSACTION_TIMEOUT_MS"],
        "queue.buffering.max.messages": 500_000,
        # Transactional requests the broker refuses for now (EndTxn while markers
        # are written, a coordinator loading) are retried after retry.backoff.ms,
        # 100 ms by default; 20 ms, as the Java client retries them (KAFKA-5477).
        # AddPartitionsToTxn waits a fixed 20 ms whatever this says: see the lanes.
        "retry.backoff.ms": 20,
    }


def lane_transactional_id(base: str, lane: int) -> str:
    """Lane 0 keeps the shard's own id (a relay of an older release is fenced by it)."""
    return base if lane == 0 else f"{base}-lane-{lane}"


class ShardTransaction:
    """The rows of one batch that go to one shard, in one Kafka transaction."""

    __slots__ = (
        "shard",
        "epoch",
        "publisher",
        "rows",
        "partitions",
        "offsets",
        "errors",
        "error",
        "committed_at",
        "committed_at_monotonic",
    )

    def __init__(self, shard: int, epoch: int, publisher: "ShardPublisher", size: int):
        self.shard = shard
        self.epoch = epoch
        self.publisher = publisher
        self.rows: list[ClaimedRow] = []
        self.partitions = [-1] * size
        self.offsets = [-1] * size
        # (index in rows, delivery error) of each failed delivery
        self.errors: list[tuple[int, KafkaError]] = []
        self.error: KafkaError | None = None  # why the transaction failed
        self.committed_at: float | None = None  # wall clock, stored as published_at
        self.committed_at_monotonic: float | None = None

    def send(self, row: ClaimedRow, headers) -> None:
        """Produce one claimed row into this transaction."""
        on_delivery = partial(self.delivered, len(self.rows))
        self.publisher.produce(
            row.topic, row.payload.encode(), row.key.encode(), headers, on_delivery
        )
        self.rows.append(row)

    @property
    def seqs(self) -> list[int]:
        return [row.seq for row in self.rows]

    def delivered(self, index: int, err, msg) -> None:
        if err is None:
            self.partitions[index] = msg.partition()
            self.offsets[index] = msg.offset()
        else:
            self.errors.append((index, err))

    def acknowledged(self) -> tuple[list[int], list[int]]:
        """Partitions and offsets of the rows, in row order."""
        n = len(self.rows)
        return self.partitions[:n], self.offsets[:n]

    def failed_rows(self, outcome: Outcome) -> list[tuple[ClaimedRow, KafkaError]]:
        """The rows whose delivery failed with an error of this outcome."""
        return [
            (self.rows[i], err)
            for i, err in self.errors
            if DeliveryErrorPolicy.classify(err) is outcome
        ]


class ShardPublisher:
    """The transactional producers of one shard led by this relay.

    A shard's transactions take turns over ``LANES`` producers, each with a
    ``transactional.id`` of its own. After a commit Apache Kafka still writes the
    transaction's markers for a few milliseconds, and the same producer's next
    transaction is refused meanwhile (CONCURRENT_TRANSACTIONS); librdkafka then waits
    a fixed 20 ms before it asks again (rdkafka_txnmgr.c). The next batch goes on
    the other lane, whose markers were written long ago. Order is kept: a batch is
    produced only once the one before it has committed, so its records come after
    the earlier batch's in every partition, and read_committed readers see them in
    that order. A new leader fences every lane (``start``).
    """

    LANES = 2

    def __init__(self, shard: int, **overrides):
        self.shard = shard
        own = shard_producer_settings(shard) | overrides
        base = own["transactional.id"]
        self.producers = [
            Producer(
                producer_config(
                    **(own | {"transactional.id": lane_transactional_id(base, lane)})
                )
            )
            for lane in range(self.LANES)
        ]
        self._lane = 0
        self.producer = self.producers[0]  # the lane of the open (or last) transaction
        self.ready = False

    def start(self, timeout: float) -> None:
        """Fence every former producer of the shard (raises KafkaException if it cannot)."""
        for producer in self.producers:
            producer.init_transactions(timeout)
        self.ready = True

    def begin(self) -> None:
        """Open the next transaction, on the lane after the last one's."""
        self._lane = (self._lane + 1) % len(self.producers)
        self.producer = self.producers[self._lane]
        self.producer.begin_transaction()

    def produce(
        self, topic: str, value: bytes, key: bytes, headers, on_delivery
    ) -> None:
        produce(
            self.producer,
            topic,
            value=value,
            key=key,
            headers=headers,
            on_delivery=on_delivery,
        )

    def commit(self, deadline: float) -> None:
        """Commit the open transaction; on failure abort it and raise the KafkaException."""
        try:
            while True:
                try:
                    self.producer.commit_transaction(
                        max(0.1, min(1.0, deadline - time.monotonic()))
                    )
                    return
                except KafkaException as exc:
                    err = exc.args[0]
                    # A fenced or failed producer never commits: give up now rather
                    # than retry until the deadline, even if the error says retriable.
                    if err.fatal() or err.txn_requires_abort():
                        raise
                    if err.retriable() and time.monotonic() < deadline:
                        continue
                    raise
        except KafkaException:
            self.abort()
            raise

    def abort(self) -> None:
        """Abort the open transaction; a producer that cannot is not used again."""
        try:
            self.producer.abort_transaction(2.0)
        except KafkaException:
            self.ready = False

    def close(self) -> None:
        """Drop what is queued in every lane and let go of the producers."""
        self.ready = False
        for producer in self.producers:
            try:
                producer.purge(in_queue=True, in_flight=False)
                producer.flush(0)
            except (KafkaException, RuntimeError):
                pass
