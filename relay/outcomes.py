"""What a batch's outcomes mean: rows released, keys held, shards dropped, counts kept.

The relay's one error policy (``DeliveryErrorPolicy``) names the outcome of each
Kafka error; this module acts on it for the commit of each shard transaction and
for its mark.
"""

import logging
import time

from confluent_kafka import KafkaError

from healthcare.logging import log_context
from relay.broker_health import BrokerHealth
from relay.dispatch import DispatchRules
from relay.metrics import BATCH_DURATION, BATCH_SIZE, FAILED_ATTEMPTS, PUBLISHED
from relay.publisher import DeliveryErrorPolicy, Outcome, ShardTransaction
from relay.shards import ShardSet
from relay.stages import ProducedBatch
from relay.store import DATABASE_ERRORS, ClaimedRow

logger = logging.getLogger("relay")

EventFailure = tuple[ClaimedRow, KafkaError]


class BatchOutcomes:
    """Act on commit and mark outcomes, in the main thread."""

    def __init__(
        self,
        *,
        rules: DispatchRules,
        shards: ShardSet,
        broker: BrokerHealth,
        store,
    ):
        self.rules = rules
        self.shards = shards
        self.broker = broker
        self.store = store

    def after_commit(self, batch: ProducedBatch) -> bool:
        """Act on a batch's commit outcome once; False if it failed just now."""
        if batch.commit_handled:
            return True
        batch.commit_handled = True
        failed = [
            (shard, transaction)
            for shard, transaction in batch.transactions.items()
            if transaction.error is not None
        ]
        for shard, transaction in failed:
            self.rules.release(shard, transaction.seqs)
            self._commit_failed(shard, transaction)
        if failed:
            self.rules.restart_from_oldest()
        else:
            self.broker.recovered()
        return not failed

    def _commit_failed(self, shard: int, transaction: ShardTransaction) -> None:
        fenced = transaction.failed_rows(Outcome.FENCED)
        if (
            fenced
            and DeliveryErrorPolicy.classify(transaction.error) is not Outcome.FENCED
        ):
            transaction.error = fenced[0][1]  # a fenced delivery fences the shard
        event_errors = transaction.failed_rows(Outcome.RETRY_EVENT)
        if DeliveryErrorPolicy.classify(transaction.error) is Outcome.FENCED:
            self.transaction_failed(shard, transaction.error, len(transaction.rows))
        elif event_errors:
            self.events_failed(shard, event_errors)
            if not transaction.publisher.ready:
                self.transaction_failed(shard, transaction.error, 0)
        else:
            self.transaction_failed(shard, transaction.error, len(transaction.rows))

    def after_mark(self, batch: ProducedBatch) -> int:
        """Release the rows the Marker is done with; returns how many were marked."""
        self.after_commit(batch)
        published = 0
        for shard, transaction in batch.transactions.items():
            if transaction.error is not None:
                continue  # released when its commit failed
            self.rules.release(shard, transaction.seqs)
            marked = batch.marked.get(shard)
            if marked:
                published += marked
                PUBLISHED.labels(str(shard)).inc(marked)
                BATCH_SIZE.observe(marked)
                BATCH_DURATION.observe(
                    transaction.committed_at_monotonic - batch.claimed_at
                )
            elif shard in batch.mark_errors:
                # Acknowledged, not marked: they go out once more (consumers skip them).
                logger.warning(
                    "relay: could not mark %d events of shard %d: %s",
                    len(transaction.rows),
                    shard,
                    batch.mark_errors[shard],
                )
                self.rules.restart_from_oldest()
            else:
                FAILED_ATTEMPTS.labels("fenced").inc(len(transaction.rows))
                self.shards.drop(shard, "its lease moved to another relay")
        return published

    def events_failed(self, shard: int, failed: list[EventFailure]) -> None:
        """Events that cannot be written: count the attempt, hold their keys, back off."""
        now = time.monotonic()
        for row, err in failed:
            self.rules.hold_after_failure(row.key, row.attempts + 1, now)
            with log_context(event_id=row.event_id):
                logger.warning(
                    "relay: event seq=%d key=%s failed (attempt %d): %s",
                    row.seq,
                    row.key,
                    row.attempts + 1,
                    err,
                )
        FAILED_ATTEMPTS.labels("event").inc(len(failed))
        epoch = self.shards.epoch(shard)
        if epoch is None:
            return
        try:
            recorded = self.store.record_failures(
                failures=[(row.seq, str(err)) for row, err in failed],
                shard=shard,
                epoch=epoch,
                max_backoff=self.rules.max_backoff,
            )
        except DATABASE_ERRORS as exc:  # the keys stay held in memory; the count waits
            logger.warning("relay: could not record failed attempts: %s", exc)
            self.store.close()
            return
        keys = {row.seq: row.key for row, _ in failed}
        for seq, _, delay in recorded:
            self.rules.hold(keys[seq], now + delay)

    def transaction_failed(self, shard: int, error, count: int) -> None:
        """A shard's transaction failed as a whole: fenced, or the broker unavailable."""
        if DeliveryErrorPolicy.classify(error) is Outcome.FENCED:
            FAILED_ATTEMPTS.labels("fenced").inc(count)
            self.shards.drop(shard, f"fenced by a newer leader ({error})")
            return
        self.broker.failed(error, count)
        self.shards.renew_publisher(shard, error, not_before=self.broker.pause_until)
