"""The notification consumer: Kafka batches in, one database transaction per batch.

A batch is whatever the client has already fetched, up to ``batch_size`` records;
an idle consumer waits at most ``batch_timeout_ms`` for the first one. Each batch:
parse and plan (pure) -> one transaction (inbox + notifications + email deliveries)
-> dead letters acknowledged -> offsets stored and committed. A crash anywhere
before the commit means the batch is read again, and the inbox skips what was
already applied.

The transaction runs on a dedicated database thread, so that while PostgreSQL
writes one batch this thread fetches and parses the next; batches are still
written, dead-lettered and committed strictly one after the other.
"""

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from django.conf import settings

from core.logcontext import log_context
from core.loops import RateLimited, StopOnSignal, produce
from messaging.config import consumer_config, producer_config
from messaging.deadletter import dead_letter_headers
from messaging.topics import ensure_topics
from notifications import metrics
from notifications.group import GroupMember
from notifications.inbox import Applied, apply_events, reset_connection
from notifications.policy import Batch, Decision, ErrorPolicy
from notifications.records import DeadLetter, ParsedEvent, parse_record

logger = logging.getLogger("notifications")


class NotificationConsumer(GroupMember, StopOnSignal):
    """Consume appointment events and apply them until stopped."""

    loop_name = "consumer"
    stop_message = "finishing the batch in hand"
    logger = logger

    def __init__(
        self,
        *,
        group: str | None = None,
        topics: list[str] | None = None,
        batch_size: int | None = None,
        batch_timeout_ms: int | None = None,
        consumer_overrides: dict | None = None,
        on_applied: Callable[[], None] | None = None,
    ):
        conf = settings.CONSUMER
        self.group = group or conf["GROUP"]
        self.topics = topics or conf["TOPICS"]
        self.dlq_topic = conf["DLQ_TOPIC"]
        self.batch_size = batch_size or conf["BATCH_SIZE"]
        self.batch_timeout = (batch_timeout_ms or conf["BATCH_TIMEOUT_MS"]) / 1000
        self.consumer_overrides = consumer_overrides or {}
        self.on_applied = on_applied
        self.running = True
        self.processed = 0
        self.consumer: Consumer | None = None
        self.dlq_producer: Producer | None = None
        # Every database call of the Kafka loop runs on this one thread (and so on
        # its one connection).
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consumer-db")
        self._assigned: set[tuple[str, int]] = set()
        self._committed: dict[tuple[str, int], int] = {}  # offsets stored by us
        self._waiting = False
        self._lag_due = RateLimited(1.0)
        self._positions_due = RateLimited(1.0)
        self._kafka_warning_due = RateLimited(10.0)

    # -- lifecycle ---------------------------------------------------------
    def stop(self) -> None:
        self.running = False

    def run(self) -> int:
        """Consume until stopped; return the number of records processed."""
        self.consumer = Consumer(
            consumer_config(
                self.group,
                # Bound the prefetched records (and so the memory) to a few batches.
                **{"queued.max.messages.kbytes": 16384},
                **self.consumer_overrides,
            )
        )
        self.dlq_producer = Producer(producer_config())
        self._ensure_topics()
        self.consumer.subscribe(
            self.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        logger.info(
            "consumer: started (group=%s, topics=%s, batch=%d, brokers=%s)",
            self.group,
            ",".join(self.topics),
            self.batch_size,
            settings.KAFKA["BROKERS"],
        )
        in_flight: Batch | None = None
        try:
            while self.running:
                # While a batch is being written, only take what is already fetched.
                records = self._poll_batch(wait=in_flight is None)
                batch = self._prepare(records) if records else None
                if in_flight is None and batch is not None:
                    self._start(batch)
                elif in_flight is not None and not self._finish(in_flight, batch):
                    # stopped before the batch was done: no offset of it, nor of the
                    # next one, is committed; both are read again, and the inbox skips
                    # what the next one's write may already have applied
                    in_flight = None
                    break
                in_flight = batch
                if in_flight is None:
                    # idle: everything handed out applied; at a stop, commit now
                    self._commit_positions(now=not self.running)
                self._update_lag()
            if in_flight is not None:
                self._finish(in_flight)
        finally:
            self._close()
        return self.processed

    def _close(self) -> None:
        self._db.submit(reset_connection).result()
        self._db.shutdown()
        remaining = self.dlq_producer.flush(5)
        if remaining:
            logger.warning(
                "consumer: %d dead letters unacknowledged at exit", remaining
            )
        # close() revokes the assignment, which commits the stored offsets.
        self.consumer.close()
        logger.info("consumer: stopped after %d records", self.processed)

    def _ensure_topics(self) -> None:
        """Create missing topics so the subscription sees them at once."""
        try:
            ensure_topics([*self.topics, self.dlq_topic], timeout=5)
        except KafkaException as exc:
            logger.warning(
                "consumer: cannot check topics yet (%s); subscribing anyway", exc
            )

    # -- one batch -----------------------------------------------------------
    def _poll_batch(self, *, wait: bool) -> list:
        """What is already fetched, up to batch_size; if none and ``wait``, wait for one."""
        msgs = self.consumer.consume(self.batch_size, timeout=0)
        if not msgs and wait:
            first = self.consumer.poll(self.batch_timeout)
            if first is None:
                return []
            msgs = [first]
            if self.batch_size > 1:
                msgs += self.consumer.consume(self.batch_size - 1, timeout=0)
        return [m for m in msgs if not self._is_error(m)]

    def _is_error(self, msg) -> bool:
        err = msg.error()
        if err is None:
            return False
        if err.fatal():
            raise KafkaException(err)
        if err.code() != KafkaError._PARTITION_EOF:
            self._warn_kafka("consumer: %s", err)
        return True

    def _prepare(self, records: list) -> Batch:
        """Parse and plan every record; a record that fails is a dead letter."""
        batch = Batch(records)
        for msg in records:
            try:
                batch.events.append(parse_record(msg))
            except Exception as exc:  # invalid record or handler error: permanent
                batch.dead.append(DeadLetter(msg, exc))
        return batch

    def _start(self, batch: Batch) -> Batch:
        """Begin the batch's transaction on the database thread."""
        if batch.events:
            batch.write = self._db.submit(apply_events, batch.events)
        return batch

    def _finish(self, batch: Batch, following: Batch | None = None) -> bool:
        """Wait for the write, dead-letter the bad records, then commit the offsets.

        Once the batch is written, the ``following`` batch's write starts, so that
        PostgreSQL writes it while this one's dead letters and offset commit go
        to the broker (the writes stay one after the other, on one thread).
        Returns False when the consumer was stopped before the batch was done
        (nothing of it is committed then; it will be read again).
        """
        applied = self._apply(batch.events, batch.write)
        if applied is None:
            return False
        if following is not None:
            self._start(following)
        dead = batch.dead + [DeadLetter(e.msg, exc) for e, exc in applied.rejected]
        if dead and not self._dead_letter(dead):
            return False
        records = [m for m in batch.records if self._owned(m)]
        self._commit(records)
        self._account(records, applied, dead, batch.started)
        return True

    def _apply(self, events: list[ParsedEvent], write: Future | None) -> Applied | None:
        """The result of apply_events under the error policy; None if stopped meanwhile.

        ``write`` is the call already running for all of ``events``, if any.
        """
        total = Applied()
        pending, one_by_one, attempt = events, False, 0
        while pending:
            chunk = pending[:1] if one_by_one else pending
            if write is None:
                write = self._db.submit(apply_events, chunk)
            try:
                applied = write.result()
            except Exception as exc:
                write = None
                if ErrorPolicy.decide(exc) is Decision.RETRY:
                    attempt += 1
                    metrics.TRANSIENT_ERRORS.inc()
                    delay = ErrorPolicy.backoff(attempt)
                    logger.warning(
                        "consumer: database unavailable (%s: %s); retry %d in %.1fs",
                        type(exc).__name__,
                        _first_line(exc),
                        attempt,
                        delay,
                    )
                    self._db.submit(reset_connection).result()
                    if not self._wait(delay):
                        return None
                    pending = [e for e in pending if self._owned(e.msg)]
                elif len(chunk) > 1:
                    logger.warning(
                        "consumer: batch failed (%s); applying its records one by one",
                        type(exc).__name__,
                    )
                    one_by_one = True
                else:
                    total.rejected.append((chunk[0], exc))
                    pending = pending[1:]
                continue
            write, attempt = None, 0
            total.new += applied.new
            total.duplicates += applied.duplicates
            total.rejected += applied.rejected
            pending = pending[len(chunk) :]
        return total

    def _dead_letter(self, dead: list[DeadLetter]) -> bool:
        """Send records to the dead-letter topic; True once the broker acked them all."""
        attempt = 0
        while True:
            failures = []
            for d in dead:
                self._produce_dead_letter(d, failures)
            remaining = self.dlq_producer.flush(30)
            if not remaining and not failures:
                for d in dead:
                    metrics.DEAD_LETTERS.labels(type(d.error).__name__).inc()
                    with log_context(**_event_id_of(d.msg)):
                        logger.warning(
                            "consumer: dead-lettered %s[%d]@%d: %s: %s",
                            d.msg.topic(),
                            d.msg.partition(),
                            d.msg.offset(),
                            type(d.error).__name__,
                            d.error,
                        )
                return True
            attempt += 1
            delay = ErrorPolicy.backoff(attempt)
            logger.warning(
                "consumer: dead-letter topic %s did not acknowledge (%s); "
                "retry %d in %.1fs",
                self.dlq_topic,
                failures[0] if failures else "timeout",
                attempt,
                delay,
            )
            if not self._wait(delay):
                return False
            dead = [d for d in dead if self._owned(d.msg)]

    def _produce_dead_letter(self, d: DeadLetter, failures: list) -> None:
        def on_delivery(err, msg):
            if err is not None:
                failures.append(err)

        produce(
            self.dlq_producer,
            self.dlq_topic,
            poll_seconds=0.1,
            key=d.msg.key(),
            value=d.msg.value(),
            headers=dead_letter_headers(d.msg, d.error),
            on_delivery=on_delivery,
        )

    def _account(self, records, applied: Applied, dead, started: float) -> None:
        now = time.time()
        self.processed += len(records)
        notes = sum(len(e.planned) for e in applied.new)
        metrics.RECORDS.inc(len(records))
        metrics.EVENTS_APPLIED.inc(len(applied.new))
        metrics.DUPLICATES.inc(applied.duplicates)
        metrics.NOTIFICATIONS.inc(notes)
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        for e in applied.new:
            if e.time is not None:
                metrics.EVENT_DELAY.observe(max(0.0, now - e.time.timestamp()))
        if applied.new and self.on_applied is not None:
            self.on_applied()
        if logger.isEnabledFor(logging.INFO):
            for e in applied.new:
                with log_context(event_id=e.event_id):
                    for p in e.planned:
                        logger.info(
                            "NOTIFICATION: %s appointment=%s recipient=%s",
                            e.event_type,
                            e.appointment_id,
                            p.recipient_id,
                        )
            if applied.duplicates:
                logger.info("consumer: skipped %d duplicate events", applied.duplicates)


def _event_id_of(msg) -> dict[str, str]:
    """``{"event_id": ce_id}`` for log_context, when the record has a ce_id header."""
    for name, value in msg.headers() or ():
        if name == "ce_id" and value:
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            return {"event_id": text}
    return {}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
