"""Produce claimed rows into one Kafka transaction per shard."""

import json

from confluent_kafka import KafkaException

from relay.dispatch import BatchRouting, DispatchRules
from relay.outcomes import BatchOutcomes, EventFailure
from relay.publisher import DeliveryErrorPolicy, Outcome, ShardTransaction
from relay.shards import ShardSet
from relay.stages import ProducedBatch
from relay.store import ClaimedRow


class BatchProducer:
    """Turn claimed rows into a ``ProducedBatch``; a row that cannot go backs off."""

    def __init__(
        self,
        *,
        shards: ShardSet,
        rules: DispatchRules,
        outcomes: BatchOutcomes,
    ):
        self.shards = shards
        self.rules = rules
        self.outcomes = outcomes
        self._decode = json.JSONDecoder().raw_decode

    def produce(
        self, rows: list[ClaimedRow]
    ) -> tuple[ProducedBatch, dict[int, list[EventFailure]]]:
        """The batch of open transactions, and per shard the events that failed."""
        batch = ProducedBatch()
        routing = BatchRouting(self.shards.shard_count)
        failures: dict[int, list[EventFailure]] = {}
        for row in rows:
            shard = routing.shard_for(row)
            if shard is None:
                continue
            try:
                transaction = self._transaction(batch, shard, len(rows))
                if transaction is None:  # lost or handed over since the claim
                    routing.shard_failed(shard)
                    continue
                transaction.send(row, self._decode(row.headers)[0])
            except KafkaException as exc:
                err = exc.args[0]
                if DeliveryErrorPolicy.classify(err) is Outcome.RETRY_EVENT:
                    routing.key_failed(row.key)
                    failures.setdefault(shard, []).append((row, err))
                else:
                    routing.shard_failed(shard, err)
        self._settle_routing(batch, routing)
        return batch, failures

    def _transaction(self, batch: ProducedBatch, shard: int, size: int):
        transaction = batch.transactions.get(shard)
        if transaction is None:
            publisher = self.shards.publisher(shard)
            if publisher is None:
                return None
            publisher.begin()
            epoch = self.shards.epoch(shard)
            transaction = ShardTransaction(shard, epoch, publisher, size)
            batch.transactions[shard] = transaction
        return transaction

    def _settle_routing(self, batch: ProducedBatch, routing: BatchRouting) -> None:
        """Abort what cannot go; the rows of the rest are in flight."""
        transactions = batch.transactions
        for shard, err in routing.failed_shards.items():
            transaction = transactions.pop(shard, None)
            if transaction is not None:
                transaction.publisher.abort()
            if err is not None:
                count = len(transaction.rows) if transaction else 0
                self.outcomes.transaction_failed(shard, err, count)
            self.rules.restart_from_oldest()
        for shard in [s for s, t in transactions.items() if not t.rows]:
            transactions.pop(shard).publisher.abort()
        for shard, transaction in transactions.items():
            transaction.publisher.producer.poll(0)
            self.rules.dispatched(shard, transaction.seqs)
