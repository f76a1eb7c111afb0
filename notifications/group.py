"""The consumer's side of the Kafka group: partitions owned, paused, committed, lag.

Mixed into ``NotificationConsumer``: the rebalance callbacks, offset commits,
waiting with paused partitions while the database is down, and the lag gauge.
"""

import logging
import time

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from messaging.offsets import partition_lag
from notifications import metrics

logger = logging.getLogger("notifications")


class GroupMember:
    """State and callbacks of one member of the consumer group."""

    consumer = None
    running = True

    # -- rebalancing (cooperative-sticky) ------------------------------------
    def _on_assign(self, consumer, partitions) -> None:
        consumer.incremental_assign(partitions)
        if self._waiting:
            consumer.pause(partitions)  # the database is down: read nothing new yet
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        logger.info("consumer: assigned %s", _describe(partitions))

    def _on_revoke(self, consumer, partitions) -> None:
        """Commit what was processed on these partitions before another member gets them."""
        self._commit_stored()
        self._forget(partitions)
        logger.info("consumer: revoked %s", _describe(partitions))

    def _on_lost(self, consumer, partitions) -> None:
        self._forget(partitions)
        logger.warning("consumer: lost %s (session expired)", _describe(partitions))

    def _forget(self, partitions) -> None:
        for p in partitions:
            self._assigned.discard((p.topic, p.partition))
            self._committed.pop((p.topic, p.partition), None)
            try:
                metrics.LAG.remove(p.topic, str(p.partition))
            except KeyError:
                pass

    def _owned(self, msg) -> bool:
        return (msg.topic(), msg.partition()) in self._assigned

    def _commit(self, records: list) -> None:
        """Store the offsets after these records and commit them."""
        last = {}
        for msg in records:
            last[(msg.topic(), msg.partition())] = msg.offset()
        if not last:
            return
        self._store_and_commit(
            [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        )

    def _commit_positions(self, now: bool = False) -> None:
        """When idle, every record handed out applied: commit past commit markers.

        A Kafka transaction's commit marker takes the offset after its last record.
        The consumer's position skips it, "last record + 1" does not: without this
        a caught-up group would show a lag of one per transaction (high watermark
        minus committed offset, as the broker and its tools count it) forever.
        """
        if not self._assigned or not (now or self._positions_due.ready()):
            return
        partitions = [TopicPartition(t, p) for t, p in sorted(self._assigned)]
        try:
            positions = self.consumer.position(partitions)
        except KafkaException:
            return
        ahead = [
            tp
            for tp in positions
            if tp.offset > self._committed.get((tp.topic, tp.partition), -1) >= 0
        ]
        if ahead:
            self._store_and_commit(ahead)

    def _store_and_commit(self, offsets: list[TopicPartition]) -> None:
        try:
            self.consumer.store_offsets(offsets=offsets)
        except KafkaException as exc:
            # The partition was revoked meanwhile; its new owner re-reads these records.
            self._warn_kafka("consumer: cannot store offsets: %s", exc)
            return
        for tp in offsets:
            self._committed[(tp.topic, tp.partition)] = tp.offset
        self._commit_stored()

    def _commit_stored(self) -> None:
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                # Stored offsets go out with the next commit; a re-read is skipped by
                # the inbox, so a failed commit costs time, never correctness.
                self._warn_kafka("consumer: offset commit failed, will retry: %s", exc)

    # -- waiting while something is down ---------------------------------------
    def _wait(self, seconds: float) -> bool:
        """Pause the partitions and keep polling for ``seconds``; False if stopped.

        Polling keeps the group membership (max.poll.interval.ms) and serves
        rebalances meanwhile; pausing means nothing new is read. librdkafka resumes
        each partition right after the last record handed to us, so the records in
        hand stay the next ones to apply.
        """
        self._waiting = True
        self.consumer.pause(self.consumer.assignment())
        try:
            end = time.monotonic() + seconds
            while self.running and time.monotonic() < end:
                msg = self.consumer.poll(min(0.1, max(0.0, end - time.monotonic())))
                if msg is not None and msg.error() is None:
                    self._unread(msg)
        finally:
            self._waiting = False
            self.consumer.resume(self.consumer.assignment())
        return self.running

    def _unread(self, msg) -> None:
        """Put back a record that arrived while waiting: it is read again later."""
        tp = TopicPartition(msg.topic(), msg.partition(), msg.offset())
        self.consumer.seek(tp)
        self.consumer.pause([tp])

    # -- observability -------------------------------------------------------
    def _update_lag(self) -> None:
        """Lag per partition from the high watermark of the last fetch response."""
        if not self._assigned or not self._lag_due.ready():
            return
        partitions = [TopicPartition(t, p) for t, p in sorted(self._assigned)]
        try:
            positions = self.consumer.position(partitions)
            # Nothing read from a partition yet: it starts at its committed offset.
            unread = [tp for tp in positions if tp.offset < 0]
            if unread:
                committed = self.consumer.committed(unread, timeout=1)
                starts = {(tp.topic, tp.partition): tp.offset for tp in committed}
                for tp in unread:
                    tp.offset = starts.get((tp.topic, tp.partition), -1)
        except KafkaException:
            return
        for tp in positions:
            low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:
                continue  # no fetch response yet
            lag = partition_lag(committed=tp.offset, end=high, start=low)
            metrics.LAG.labels(tp.topic, str(tp.partition)).set(lag)

    def _warn_kafka(self, message: str, *args) -> None:
        if self._kafka_warning_due.ready():
            logger.warning(message, *args)


def _describe(partitions) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing"
