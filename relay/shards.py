"""The shards this relay leads: leadership, a transactional producer each, hand-over."""

import logging
import time
from collections.abc import Callable

from confluent_kafka import KafkaException

from relay.broker_health import BrokerHealth
from relay.leadership import leadership_for_database
from relay.metrics import SHARD_LEADER
from relay.publisher import ShardPublisher

logger = logging.getLogger("relay")


class ShardSet:
    """Take and give up shards, and keep a ready producer for each one led."""

    surplus_interval = 2.0  # seconds between checks for shards to hand over
    restart_delay = 2.0  # seconds before a producer that failed to start tries again

    def __init__(
        self,
        *,
        shard_count: int,
        store,
        lease_timeout: float,
        holder: str,
        broker: BrokerHealth,
        producer_overrides: dict | None = None,
    ):
        self.shard_count = shard_count
        self.lease_timeout = lease_timeout
        self.broker = broker
        self.producer_overrides = producer_overrides or {}
        self.leadership = leadership_for_database(
            shard_count=shard_count,
            store=store,
            lease_timeout=lease_timeout,
            holder=holder,
        )
        self.publishers: dict[int, ShardPublisher] = {}
        self.draining: set[int] = set()  # to hand over once their rows are done
        self._next_start: dict[int, float] = {}
        self._next_surplus = 0.0

    def maintain(self, busy: Callable[[int], bool]) -> None:
        """Heartbeat, take and lose shards, start producers, hand over idle surplus."""
        acquired, lost = self.leadership.maintain()
        for shard in lost:
            self.drop(shard, "leadership lost")
        for shard in acquired:
            self._lead(shard)
        now = time.monotonic()
        for shard, publisher in list(self.publishers.items()):
            if not publisher.ready and now >= self._next_start.get(shard, 0.0):
                self._start(shard, publisher)
        if now >= self._next_surplus:
            self._next_surplus = now + self.surplus_interval
            self.draining |= set(self.leadership.surplus())
        for shard in list(self.draining):
            if not busy(shard):
                self.drop(shard, "handed over to a relay that has fewer shards")

    def publishable(self) -> list[int]:
        """Shards whose producer is ready and that are not being handed over."""
        held = self.leadership.held
        return sorted(
            shard
            for shard, publisher in self.publishers.items()
            if publisher.ready and shard not in self.draining and shard in held
        )

    def publisher(self, shard: int) -> ShardPublisher | None:
        """The shard's ready producer, None if it is no longer led or not ready."""
        publisher = self.publishers.get(shard)
        if (
            publisher is None
            or not publisher.ready
            or shard not in self.leadership.held
        ):
            return None
        return publisher

    def epoch(self, shard: int) -> int | None:
        """The lease epoch this relay holds for the shard, None if it lost it."""
        return self.leadership.held.get(shard)

    def leads(self, shard: int) -> bool:
        return shard in self.leadership.held

    def drop(self, shard: int, reason: str, *, expected: bool = False) -> None:
        """Stop publishing a shard and let go of its lock (``expected``: at a stop,
        logged as INFO; a lost or fenced lease is a WARNING)."""
        publisher = self.publishers.pop(shard, None)
        if publisher is not None:
            publisher.close()
            logger.log(
                logging.INFO if expected else logging.WARNING,
                "relay: stopped publishing shard %d: %s",
                shard,
                reason,
            )
        self.leadership.release(shard)
        self.draining.discard(shard)
        SHARD_LEADER.labels(str(shard)).set(0)

    def renew_publisher(self, shard: int, error, not_before: float) -> None:
        """After a failed transaction: replace a producer that cannot be used again."""
        publisher = self.publishers.get(shard)
        if publisher is not None and (not publisher.ready or error.fatal()):
            publisher.close()
            self.publishers[shard] = self._new_publisher(shard)
            self._next_start[shard] = not_before

    def heartbeat(self) -> None:
        self.leadership.heartbeat()

    def wait(self, timeout: float, wake_fd: int) -> bool:
        """Sleep until a NOTIFY, ``wake_fd`` is readable, or the timeout; False
        when only ``wake_fd`` woke it (no new rows were announced)."""
        return self.leadership.wait(timeout, wake_fd)

    def close(self) -> None:
        for shard in list(self.publishers):
            self.drop(shard, "relay stopping", expected=True)
        self.leadership.close()

    def _lead(self, shard: int) -> None:
        """Start leading a shard just acquired: a new producer for it."""
        epoch = self.leadership.held.get(shard)
        if epoch is None:
            return  # lost again at once (the connection dropped giving up another)
        self._close_former_publisher(shard)
        self.publishers[shard] = self._new_publisher(shard)
        self._next_start[shard] = 0.0
        logger.info(
            "relay: leading shard %d of %d (epoch %d)", shard, self.shard_count, epoch
        )

    def _close_former_publisher(self, shard: int) -> None:
        """A shard lost and taken back at once: its old producer must not go on.

        The new producer's ``init_transactions`` fences the old one at the broker,
        and the new lease epoch fences the old batches' marks.
        """
        publisher = self.publishers.pop(shard, None)
        self.draining.discard(shard)
        if publisher is not None:
            publisher.close()
            logger.warning("relay: shard %d taken back after its lock was lost", shard)

    def _new_publisher(self, shard: int) -> ShardPublisher:
        return ShardPublisher(shard, **self.producer_overrides)

    def _start(self, shard: int, publisher: ShardPublisher) -> None:
        try:
            publisher.start(timeout=min(2.0, self.lease_timeout / 3))
        except KafkaException as exc:
            publisher.producer.poll(0)  # serves error_cb: names a refused login
            self._next_start[shard] = time.monotonic() + self.restart_delay
            self.broker.problem(exc.args[0])
            if publisher.producer is not None and exc.args[0].fatal():
                self.publishers[shard] = self._new_publisher(shard)
            return
        SHARD_LEADER.labels(str(shard)).set(1)
        logger.info("relay: shard %d producer ready (older producers fenced)", shard)
