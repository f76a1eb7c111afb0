"""The relay's two background stages and what they hand each other.

    main thread  claims and produces batch N+1 (relay.worker)
    Committer    commits batch N's shard transactions (waits for the broker)
    Marker       marks batch N-1 published, one fenced UPDATE per shard

A ``ProducedBatch`` goes main -> Committer -> Marker -> main through queues; each
stage writes only its own fields of it, and the main thread reads them after the
hand-over (``committed`` is set, or the batch came back from the Marker).
"""

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import KafkaException
from django.db import connection

from core.loops import backoff_delay
from relay.publisher import ShardTransaction
from relay.store import DATABASE_ERRORS, store_for_database

logger = logging.getLogger("relay")


class ProducedBatch:
    """Rows claimed together: a Kafka transaction per shard, then a mark per shard."""

    def __init__(self):
        self.transactions: dict[int, ShardTransaction] = {}
        self.claimed_at = time.monotonic()
        self.committed = threading.Event()  # set by the Committer
        self.commit_handled = False  # the main thread has acted on the commit outcome
        self.marked: dict[int, int] = {}  # shard -> rows marked (the Marker)
        self.mark_errors: dict[int, str] = {}

    def __len__(self):
        return sum(len(t.rows) for t in self.transactions.values())

    def in_hand(self, shard: int) -> bool:
        """Whether this batch still has a transaction of the shard to settle."""
        return shard in self.transactions and not self.commit_handled


class Wakeup:
    """A pipe that wakes the main thread's wait from another thread or a signal."""

    def __init__(self):
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self.fd, False)

    def __call__(self) -> None:
        try:
            os.write(self._write_fd, b"x")
        except OSError:
            pass

    def drain(self) -> None:
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)
        os.close(self._write_fd)


class Stage:
    """A thread that handles batches from ``inbox`` in order and passes each on.

    ``None`` in the inbox stops it. An exception that escapes (a bug, a crash) is
    kept in ``error`` for the main thread to raise.
    """

    name = "relay-stage"

    def __init__(self, *, output: queue.Queue, wake: Callable[[], None]):
        self.inbox: queue.Queue = queue.Queue()
        self.output = output
        self.wake = wake
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def handle(self, batch: ProducedBatch) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Let go of what the stage holds (in its own thread, on the way out)."""

    def _run(self) -> None:
        try:
            while (batch := self.inbox.get()) is not None:
                self.handle(batch)
                self.output.put(batch)
                self.wake()
        except BaseException as exc:  # the main thread re-raises it
            self.error = exc
            self.wake()
        finally:
            self.finish()


class Committer(Stage):
    """Commit each shard transaction of a batch, then hand the batch to the Marker."""

    name = "relay-commit"

    def __init__(self, *, deadline: Callable[[float], float], **kwargs):
        super().__init__(**kwargs)
        self.deadline = deadline  # commit start -> the time to give up

    def handle(self, batch: ProducedBatch) -> None:
        started = time.monotonic()
        for transaction in batch.transactions.values():
            try:
                transaction.publisher.commit(self.deadline(started))
                transaction.committed_at = time.time()
                transaction.committed_at_monotonic = time.monotonic()
            except KafkaException as exc:
                transaction.error = exc.args[0]
        batch.committed.set()

    def finish(self) -> None:
        self.output.put(None)  # stops the Marker once it has what was committed


class Marker(Stage):
    """Mark the rows of every shard transaction the broker acknowledged."""

    name = "relay-mark"
    attempts = 3

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.store = store_for_database("outbox-relay-mark")

    def handle(self, batch: ProducedBatch) -> None:
        self.mark(batch)

    def mark(self, batch: ProducedBatch) -> None:
        for shard, transaction in batch.transactions.items():
            if transaction.error is None:
                self._mark_transaction(batch, shard, transaction)

    def _mark_transaction(
        self, batch, shard: int, transaction: ShardTransaction
    ) -> None:
        published_at = datetime.fromtimestamp(transaction.committed_at, UTC)
        partitions, offsets = transaction.acknowledged()
        for attempt in range(1, self.attempts + 1):
            try:
                batch.marked[shard] = self.store.mark_published(
                    seqs=transaction.seqs,
                    partitions=partitions,
                    offsets=offsets,
                    shard=shard,
                    epoch=transaction.epoch,
                    published_at=published_at,
                )
                return
            except DATABASE_ERRORS as exc:
                batch.mark_errors[shard] = str(exc)
                self.store.close()
                time.sleep(backoff_delay(attempt, base=0.2, cap=1.0))

    def finish(self) -> None:
        self.store.close()
        connection.close()
