"""The relay loop: claim pending outbox rows, publish them per shard, mark them.

Three stages run at once so that a large backlog keeps the database and the broker
busy together (relay.stages):

    main thread    claim batch N+1 (one SELECT, in id order, no row locks) and produce
                   it into each shard's Kafka transaction
    Committer      commit batch N's transactions (wait for the broker's acknowledgement)
    Marker         mark batch N-1 published (one UPDATE per shard, fenced by the lease)

Batch N+1 is produced only once batch N's commit succeeded; if it failed, the rows
claimed since are dropped and claiming starts again from the oldest pending row, so a
retry can never put a key's later event before an earlier one (relay.dispatch).
"""

import logging
import queue
import time
from functools import partial

from confluent_kafka import KafkaException
from django.conf import settings
from django.db import close_old_connections, connection

from core.loops import StopOnSignal
from relay.broker_health import BrokerHealth
from relay.dispatch import DispatchRules
from relay.leadership import relay_identity
from relay.outcomes import BatchOutcomes
from relay.producing import BatchProducer
from relay.retention import PurgeSchedule
from relay.shards import ShardSet
from relay.stages import Committer, Marker, ProducedBatch, Wakeup
from relay.store import DATABASE_ERRORS, store_for_database

logger = logging.getLogger("relay")


class Relay(StopOnSignal):
    """Publish the outbox to Kafka until stopped."""

    loop_name = "relay"
    stop_message = "finishing the batches in hand"
    logger = logger
    stop_grace = 8.0  # seconds to flush and mark after SIGTERM (exit well within 10 s)

    def __init__(
        self,
        *,
        shards: int | None = None,
        batch_size: int | None = None,
        poll_interval: float | None = None,
        once: bool = False,
        producer_overrides: dict | None = None,
        lease_timeout: float | None = None,
        purge: bool = True,
    ):
        conf = settings.OUTBOX
        self.shard_count = shards or conf["SHARDS"]
        self.batch_size = batch_size or conf["BATCH_SIZE"]
        self.poll_interval = (
            conf["POLL_INTERVAL_MS"] / 1000 if poll_interval is None else poll_interval
        )
        self.once = once
        lease_timeout = lease_timeout or conf["LEASE_TIMEOUT_S"]
        self.message_timeout = settings.KAFKA["MESSAGE_TIMEOUT_MS"] / 1000
        self.holder = relay_identity()
        self.running = True
        self.published = 0
        self._stop_requested_at: float | None = None
        self._build_parts(conf, lease_timeout, producer_overrides, purge)

    def _build_parts(self, conf, lease_timeout, producer_overrides, purge) -> None:
        """Build the parts: rules, shards, outcomes, producer, stages."""
        self.store = store_for_database("outbox-relay")
        self.rules = DispatchRules(
            batch_size=self.batch_size, max_backoff=conf["MAX_BACKOFF_S"]
        )
        self.broker = BrokerHealth(admin_timeout=min(2.0, lease_timeout / 3))
        self.shards = ShardSet(
            shard_count=self.shard_count,
            store=self.store,
            lease_timeout=lease_timeout,
            holder=self.holder,
            broker=self.broker,
            producer_overrides=producer_overrides,
        )
        self.outcomes = BatchOutcomes(
            rules=self.rules,
            shards=self.shards,
            broker=self.broker,
            store=self.store,
        )
        self.producer = BatchProducer(
            shards=self.shards, rules=self.rules, outcomes=self.outcomes
        )
        self.purge_schedule = PurgeSchedule() if purge else None
        self.wakeup = Wakeup()
        self.marked: queue.Queue = queue.Queue()  # batches back from the Marker
        self.marker = Marker(output=self.marked, wake=self.wakeup)
        self.committer = Committer(
            output=self.marker.inbox, wake=self.wakeup, deadline=self._commit_deadline
        )
        self.last_batch: ProducedBatch | None = None  # produced, commit not acted on
        self._claimed_nothing = False
        # When a claim may find rows (see _claim_needed)
        self._claim_due = True
        self._claimed_with: tuple[int, list[int]] | None = None
        self._claimed_at = 0.0

    def stop(self) -> None:
        self.running = False
        self._stop_requested_at = self._stop_requested_at or time.monotonic()
        self.wakeup()

    def run(self) -> int:
        """Run until stopped; return the number of events published."""
        logger.info(
            "relay: started (brokers=%s, shards=%d, batch=%d, holder=%s)",
            settings.KAFKA["BROKERS"],
            self.shard_count,
            self.batch_size,
            self.holder,
        )
        self.committer.thread.start()
        self.marker.thread.start()
        try:
            while self.running:
                if self._turn():
                    continue
                if self.once and self._claimed_nothing and self.rules.idle():
                    break
                self._wait(self.poll_interval)
        except KeyboardInterrupt:
            self.stop_grace = 0.0  # a second Ctrl-C: leave now, unmarked rows go again
            raise
        finally:
            self._shutdown()
        return self.published

    def _turn(self) -> bool:
        """One turn under the error policy of the loop; False when it had nothing to do."""
        try:
            return self._step()
        except DATABASE_ERRORS as exc:
            logger.warning("relay: database error, reconnecting: %s", exc)
            self._reset_database()
            self.rules.restart_from_oldest()
            self._wait(1.0)
        except KafkaException as exc:  # e.g. topics cannot be checked or created
            self.broker.failed(exc.args[0], 0)
            self.rules.restart_from_oldest()
        return True

    def _step(self) -> bool:
        self.shards.maintain(busy=self._shard_busy)
        self._take_in_marked()
        if self.purge_schedule is not None and self.shards.leads(0):
            self.purge_schedule.run_if_due()  # the leader of shard 0 purges
        shards = self.shards.publishable()
        if not shards or self.broker.paused():
            return False
        if self.rules.full():
            self._claim_due = True  # the Marker is behind: wait for it (it wakes us)
            return False
        if not self._claim_needed(shards):
            return False
        return self._publish(shards)

    def _claim_needed(self, shards: list[int]) -> bool:
        """Whether a claim may find rows to send now.

        New rows announce themselves by NOTIFY (on SQLite every wake-up counts as
        one), so a wake-up from a stage alone (a batch committed or marked) needs no
        claim, unless something since the last claim may have made rows due
        without a NOTIFY: a failure (the claim restarts at the oldest row), a held
        key, another set of shards, a full page or a full relay last time. The poll
        interval bounds it all. At a low rate this halves the claims.
        """
        return (
            self._claim_due
            or self.once
            or bool(self.rules.held)
            or self._claimed_with != (self.rules.restarts, shards)
            or time.monotonic() - self._claimed_at >= self.poll_interval
        )

    def _shard_busy(self, shard: int) -> bool:
        """Whether the shard has rows in flight (it cannot be handed over yet)."""
        last = self.last_batch
        return bool(self.rules.shard_in_flight(shard)) or (
            last is not None and last.in_hand(shard)
        )

    def _publish(self, shards: list[int]) -> bool:
        scope = {"shards": shards, "shard_count": self.shard_count}
        now = time.monotonic()
        rows = self.rules.next_rows(
            claim=partial(self.store.claim, **scope),
            pending_before=partial(self.store.pending_before, **scope),
            now=now,
        )
        self._claimed_nothing = not rows
        self._claim_due = self.rules.more_pending
        self._claimed_with = (self.rules.restarts, shards)
        self._claimed_at = now
        if not rows:
            return False
        if not self._await_commit():
            return True  # the previous batch failed: claim again from the oldest row
        self.broker.ensure_topics({row.topic for row in rows})
        batch, failures = self.producer.produce(rows)
        if batch.transactions:
            self.last_batch = batch
            self.committer.inbox.put(batch)
        for shard, failed in failures.items():
            self.outcomes.events_failed(shard, failed)
        return bool(batch.transactions or failures)

    def _await_commit(self) -> bool:
        """Wait (heartbeating) for the last batch's commit outcome; False if it failed."""
        batch, self.last_batch = self.last_batch, None
        if batch is None:
            return True
        while not batch.committed.wait(0.2):
            self._raise_stage_error()
            self.shards.heartbeat()
        return self.outcomes.after_commit(batch)

    def _take_in_marked(self) -> None:
        """Take in the batches the Marker finished."""
        self._raise_stage_error()
        while True:
            try:
                batch = self.marked.get_nowait()
            except queue.Empty:
                return
            self.published += self.outcomes.after_mark(batch)

    def _raise_stage_error(self) -> None:
        for stage in (self.committer, self.marker):
            if stage.error is not None:
                error, stage.error = stage.error, None
                raise error

    def _commit_deadline(self, started: float) -> float:
        deadline = started + self.message_timeout + 5
        if self._stop_requested_at is not None:
            deadline = min(deadline, self._stop_requested_at + self.stop_grace)
        return deadline

    def _wait(self, timeout: float) -> None:
        """Sleep until a NOTIFY, a finished batch, a signal, or the timeout."""
        if not self.running:
            return
        if self.shards.wait(min(timeout, 1.0), self.wakeup.fd):
            self._claim_due = True  # a NOTIFY, or the poll interval is over
        self.wakeup.drain()

    def _shutdown(self) -> None:
        """Let the batches in hand commit and be marked, then let go of everything."""
        self.stop()
        self.committer.inbox.put(None)
        deadline = self._stop_requested_at + self.stop_grace + 1
        for stage in (self.committer, self.marker):
            stage.thread.join(max(0.1, deadline - time.monotonic()))
        try:
            self._take_in_marked()
        except BaseException as exc:  # already on the way out
            logger.warning("relay: could not take in the last batches: %r", exc)
        unmarked = len(self.rules.in_flight)
        if unmarked:
            logger.warning(
                "relay: %d events unacknowledged at exit; they will be sent again",
                unmarked,
            )
        self.shards.close()
        self.store.close()
        self.wakeup.close()
        logger.info("relay: stopped after publishing %d events", self.published)

    def _reset_database(self) -> None:
        self.store.close()
        try:
            connection.close()
        except DATABASE_ERRORS:
            pass
        close_old_connections()
