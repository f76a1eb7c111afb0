"""The relay loop: claim pending outbox rows, produce them, mark what the broker acked."""

import logging
import select
import signal
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections, connection
from django.db import transaction
from django.utils import timezone

from relay import kafka
from relay.events import NOTIFY_CHANNEL, encode_payload
from relay.models import OutboxEvent

logger = logging.getLogger("relay")


@dataclass
class Delivery:
    error: KafkaError | None = None
    partition: int | None = None
    offset: int | None = None
    done: bool = False


def backoff_seconds(attempts: int, maximum: float) -> float:
    """Exponential backoff for an event's next attempt: 0.5 s, 1 s, 2 s, ... capped."""
    return min(maximum, 0.5 * 2 ** max(0, attempts - 1))


def acknowledged_prefix(rows, deliveries):
    """Split rows into those to mark published and those that failed.

    Only the acknowledged prefix of each key is marked: once one event of a key
    failed, its later events stay pending (even if acked) so a retry can never put
    them before it.
    """
    published, failed, blocked = [], [], set()
    for row in rows:
        d = deliveries[row.seq]
        if row.key in blocked:
            continue
        if d.done and d.error is None:
            published.append((row, d))
        else:
            blocked.add(row.key)
            failed.append((row, d))
    return published, failed


class Relay:
    """Publish the outbox to Kafka until stopped."""

    def __init__(
        self,
        *,
        batch_size: int | None = None,
        poll_interval: float | None = None,
        once: bool = False,
        producer_overrides: dict | None = None,
    ):
        self.batch_size = batch_size or settings.OUTBOX["BATCH_SIZE"]
        self.poll_interval = (
            poll_interval
            if poll_interval is not None
            else settings.OUTBOX["POLL_INTERVAL_MS"] / 1000
        )
        self.once = once
        self.running = True
        self.producer = Producer(kafka.producer_config(**(producer_overrides or {})))
        self.admin = AdminClient(kafka.admin_config())
        self._topics_ready: set[str] = set()
        self._listener = None
        self._last_broker_log = 0.0
        self._stop_requested_at: float | None = None
        self._interrupts = 0

    # -- lifecycle ---------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self._interrupts += 1
        if self._interrupts > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logger.info("relay: %s received, finishing the batch in hand", signal.Signals(signum).name)
        self.stop()

    def stop(self) -> None:
        self.running = False
        self._stop_requested_at = self._stop_requested_at or time.monotonic()

    def run(self) -> int:
        """Run until stopped; return the number of events published."""
        total = 0
        logger.info(
            "relay: started (brokers=%s, batch=%d)", settings.KAFKA["BROKERS"], self.batch_size
        )
        try:
            while self.running:
                try:
                    published = self.publish_batch()
                except (InterfaceError, DatabaseError) as exc:
                    logger.warning("relay: database error, reconnecting: %s", exc)
                    self._reset_database()
                    self._sleep(1.0)
                    continue
                except KafkaException as exc:
                    self._log_broker_problem(exc)
                    self._sleep(1.0)
                    continue
                total += published
                if self.once and published < self.batch_size:
                    break
                if published == 0:
                    self._wait_for_work()
        finally:
            remaining = self.producer.flush(5)
            if remaining:
                logger.warning("relay: %d messages unacknowledged at exit", remaining)
            self._close_listener()
            logger.info("relay: stopped after publishing %d events", total)
        return total

    # -- one batch ---------------------------------------------------------
    def claim(self) -> list[OutboxEvent]:
        """Pending rows in commit order, skipping keys whose oldest event is backing off."""
        now = timezone.now()
        waiting_keys = OutboxEvent.objects.pending().filter(next_attempt_at__gt=now).values("key")
        return list(
            OutboxEvent.objects.pending()
            .exclude(key__in=waiting_keys)
            .order_by("seq")[: self.batch_size]
        )

    def publish_batch(self) -> int:
        rows = self.claim()
        if not rows:
            return 0
        self._ensure_topics({row.topic for row in rows})
        deliveries: dict[int, Delivery] = {}
        for row in rows:
            delivery = deliveries[row.seq] = Delivery()
            self._produce(row, delivery)
        self._await(deliveries)
        published, failed = acknowledged_prefix(rows, deliveries)
        self._mark(published, failed)
        if failed:
            self._topics_ready.clear()
            self._log_broker_problem(failed[0][1].error or "not acknowledged in time")
        return len(published)

    def _produce(self, row: OutboxEvent, delivery: Delivery) -> None:
        def on_delivery(err, msg, delivery=delivery):
            delivery.done = True
            delivery.error = err
            if err is None:
                delivery.partition = msg.partition()
                delivery.offset = msg.offset()

        while True:
            try:
                self.producer.produce(
                    row.topic,
                    key=row.key.encode(),
                    value=encode_payload(row.payload),
                    headers=list(row.headers.items()),
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)

    def _await(self, deliveries: dict[int, Delivery]) -> None:
        """Wait for every delivery report; after a stop request, at most 8 s more."""
        timeout = settings.KAFKA["MESSAGE_TIMEOUT_MS"] / 1000 + 5
        deadline = time.monotonic() + timeout
        while any(not d.done for d in deliveries.values()):
            if self._stop_requested_at is not None:
                deadline = min(deadline, self._stop_requested_at + 8)
            if time.monotonic() > deadline:
                break
            self.producer.poll(0.05)

    @transaction.atomic
    def _mark(self, published, failed) -> None:
        now = timezone.now()
        for row, d in published:
            row.published_at = now
            row.partition = d.partition
            row.offset = d.offset
            row.last_error = ""
            row.next_attempt_at = None
        if published:
            OutboxEvent.objects.bulk_update(
                [row for row, _ in published],
                ["published_at", "partition", "offset", "last_error", "next_attempt_at"],
                batch_size=1000,
            )
        for row, d in failed:
            row.attempts += 1
            row.last_error = str(d.error or "no acknowledgement before the deadline")[:2000]
            row.next_attempt_at = now + timezone.timedelta(
                seconds=backoff_seconds(row.attempts, settings.OUTBOX["MAX_BACKOFF_S"])
            )
        if failed:
            OutboxEvent.objects.bulk_update(
                [row for row, _ in failed], ["attempts", "last_error", "next_attempt_at"]
            )

    def _ensure_topics(self, topics: set[str]) -> None:
        missing = topics - self._topics_ready
        if missing:
            kafka.ensure_topics(self.admin, sorted(missing), timeout=5)
            self._topics_ready |= missing

    # -- waiting -----------------------------------------------------------
    def _wait_for_work(self) -> None:
        """Sleep until a NOTIFY (PostgreSQL) or the poll interval, whichever is first."""
        if connection.vendor == "postgresql" and self._listen():
            try:
                readable, _, _ = select.select([self._listener.fileno()], [], [], self.poll_interval)
                if readable:
                    for _ in self._listener.notifies(timeout=0):
                        pass
            except Exception as exc:  # a broken LISTEN connection falls back to polling
                logger.warning("relay: LISTEN connection lost: %s", exc)
                self._close_listener()
            return
        self._sleep(self.poll_interval)

    def _listen(self) -> bool:
        if self._listener is not None:
            return True
        try:
            import psycopg

            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            self._listener = psycopg.connect(**params, autocommit=True)
            self._listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
            return True
        except Exception as exc:
            logger.warning("relay: cannot LISTEN, polling instead: %s", exc)
            self._listener = None
            return False

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except Exception:
                pass
            self._listener = None

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.running and time.monotonic() < end:
            time.sleep(min(0.05, end - time.monotonic()) if end > time.monotonic() else 0)

    def _reset_database(self) -> None:
        self._close_listener()
        try:
            connection.close()
        except Exception:
            pass
        close_old_connections()

    def _log_broker_problem(self, error) -> None:
        now = time.monotonic()
        if now - self._last_broker_log >= 10:
            self._last_broker_log = now
            logger.warning("relay: broker unavailable or rejecting events, will retry: %s", error)
