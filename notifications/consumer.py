"""The notification consumer: Kafka batches in, one database transaction per batch."""

import json
import logging
import signal
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)

from notifications.handlers import InvalidEvent, Planned, plan_notifications
from notifications.models import Notification, ProcessedEvent
from relay import kafka

logger = logging.getLogger("notifications")

REQUIRED_HEADERS = ("ce_id", "ce_type", "ce_specversion", "ce_source")


@dataclass
class ParsedEvent:
    msg: object
    event_id: uuid.UUID
    event_type: str
    data: dict
    planned: list[Planned] = field(default_factory=list)


@dataclass
class DeadLetter:
    msg: object
    error: Exception


def parse_record(msg) -> ParsedEvent:
    """Read a CloudEvents binary-mode record; raise InvalidEvent when it is unusable."""
    headers = {}
    for name, value in msg.headers() or []:
        try:
            headers[name] = value.decode() if isinstance(value, bytes) else (value or "")
        except UnicodeDecodeError:
            raise InvalidEvent(f"header {name} is not UTF-8") from None
    missing = [h for h in REQUIRED_HEADERS if not headers.get(h)]
    if missing:
        raise InvalidEvent(f"missing CloudEvents headers: {', '.join(missing)}")
    try:
        event_id = uuid.UUID(headers["ce_id"])
    except ValueError:
        raise InvalidEvent("ce_id is not a UUID") from None
    try:
        data = json.loads(msg.value() or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"value is not JSON: {exc}") from None
    event = ParsedEvent(msg, event_id, headers["ce_type"], data)
    event.planned = plan_notifications(event.event_type, data)
    return event


class ErrorPolicy:
    """The consumer's one error policy: retry transient failures, dead-letter the rest."""

    TRANSIENT = (OperationalError, InterfaceError, IntegrityError)

    @classmethod
    def is_transient(cls, exc: Exception) -> bool:
        return isinstance(exc, cls.TRANSIENT)

    @staticmethod
    def backoff(attempt: int) -> float:
        return min(30.0, 0.2 * 2**attempt)


def _insert_inbox(events: list[ParsedEvent]) -> set[uuid.UUID]:
    """Insert the event ids into the inbox; return those that were new."""
    field_ = ProcessedEvent._meta.get_field("event_id")
    table = connection.ops.quote_name(ProcessedEvent._meta.db_table)
    now = datetime.now(UTC)
    rows, params = [], []
    for e in events:
        rows.append("(%s, %s, %s, %s, %s, %s)")
        params += [
            field_.get_db_prep_value(e.event_id, connection),
            e.event_type,
            e.msg.topic(),
            e.msg.partition(),
            e.msg.offset(),
            ProcessedEvent._meta.get_field("processed_at").get_db_prep_value(now, connection),
        ]
    sql = (
        f"INSERT INTO {table} (event_id, event_type, topic, partition, {connection.ops.quote_name('offset')}, processed_at) "
        f"VALUES {', '.join(rows)} ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {field_.to_python(row[0]) for row in cursor.fetchall()}


def apply_events(events: list[ParsedEvent]) -> list[Notification]:
    """Record the events in the inbox and create their notifications, in one transaction.

    An event id already in the inbox creates nothing. Returns the new notifications.
    """
    unique = list({e.event_id: e for e in events}.values())
    if not unique:
        return []
    with transaction.atomic():
        new_ids = _insert_inbox(unique)
        notifications = [
            Notification(
                recipient_id=p.recipient_id,
                event_id=e.event_id,
                appointment_id=e.data["appointmentId"],
                event_type=e.event_type,
                message=p.message,
            )
            for e in unique
            if e.event_id in new_ids
            for p in e.planned
        ]
        Notification.objects.bulk_create(notifications, batch_size=1000)
    return notifications


class NotificationConsumer:
    """Consume appointment events and apply them until stopped."""

    def __init__(
        self,
        *,
        group: str | None = None,
        topics: list[str] | None = None,
        batch_size: int | None = None,
        batch_timeout_ms: int | None = None,
        consumer_overrides: dict | None = None,
    ):
        conf = settings.CONSUMER
        self.group = group or conf["GROUP"]
        self.topics = topics or conf["TOPICS"]
        self.dlq_topic = conf["DLQ_TOPIC"]
        self.batch_size = batch_size or conf["BATCH_SIZE"]
        self.batch_timeout = (batch_timeout_ms or conf["BATCH_TIMEOUT_MS"]) / 1000
        self.consumer_overrides = consumer_overrides or {}
        self.running = True
        self._interrupts = 0
        self.consumer = None
        self.dlq_producer = None
        self.processed = 0

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self._interrupts += 1
        if self._interrupts > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logger.info("consumer: %s received, finishing the batch in hand", signal.Signals(signum).name)
        self.running = False

    def stop(self) -> None:
        self.running = False

    def run(self) -> int:
        self.consumer = Consumer(kafka.consumer_config(self.group, **self.consumer_overrides))
        self.dlq_producer = Producer(kafka.producer_config())
        self._ensure_topics()
        self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        logger.info(
            "consumer: started (group=%s, topics=%s, brokers=%s)",
            self.group,
            ",".join(self.topics),
            settings.KAFKA["BROKERS"],
        )
        try:
            while self.running:
                msgs = self.consumer.consume(self.batch_size, timeout=self.batch_timeout)
                records = [m for m in msgs if not self._is_error(m)]
                if records:
                    self.handle_batch(records)
        finally:
            self.dlq_producer.flush(5)
            self.consumer.close()
            logger.info("consumer: stopped after %d events", self.processed)
        return self.processed

    def _ensure_topics(self) -> None:
        """Create missing topics so the subscription sees them at once."""
        try:
            kafka.ensure_topics(
                AdminClient(kafka.admin_config()), [*self.topics, self.dlq_topic], timeout=5
            )
        except KafkaException as exc:
            logger.warning("consumer: cannot check topics yet (%s); subscribing anyway", exc)

    def _is_error(self, msg) -> bool:
        err = msg.error()
        if err is None:
            return False
        if err.code() != KafkaError._PARTITION_EOF:
            logger.warning("consumer: %s", err)
        return True

    def _on_assign(self, consumer, partitions) -> None:
        logger.info("consumer: assigned %s", _describe(partitions))

    def _on_revoke(self, consumer, partitions) -> None:
        logger.info("consumer: revoked %s", _describe(partitions))

    def handle_batch(self, records: list) -> None:
        """Apply a batch, dead-letter the bad records, then commit the offsets."""
        good, dead = [], []
        for msg in records:
            try:
                good.append(parse_record(msg))
            except InvalidEvent as exc:
                dead.append(DeadLetter(msg, exc))
        good, more_dead = self._drop_unknown_recipients(good)
        dead += more_dead
        notifications = self._apply_with_retry(good)
        if notifications is None:
            return  # stopping while the database is down: nothing committed
        if dead and not self._dead_letter(dead):
            return  # stopping before the dead-letter topic acknowledged: re-read later
        self._commit(records)
        self.processed += len(records)
        for n in notifications:
            logger.info(
                "NOTIFICATION: %s appointment=%s recipient=%s",
                n.event_type,
                n.appointment_id,
                n.recipient_id,
            )

    def _drop_unknown_recipients(self, events):
        ids = {p.recipient_id for e in events for p in e.planned}
        known = set(
            get_user_model().objects.filter(id__in=ids).values_list("id", flat=True)
        ) if ids else set()
        good, dead = [], []
        for e in events:
            unknown = [p.recipient_id for p in e.planned if p.recipient_id not in known]
            if unknown:
                dead.append(DeadLetter(e.msg, InvalidEvent(f"unknown recipient user {unknown[0]}")))
            else:
                good.append(e)
        return good, dead

    def _apply_with_retry(self, events):
        attempt = 0
        while True:
            try:
                return apply_events(events)
            except DatabaseError as exc:
                if not ErrorPolicy.is_transient(exc):
                    raise
                attempt += 1
                delay = ErrorPolicy.backoff(attempt)
                logger.warning(
                    "consumer: database unavailable (%s); retry %d in %.1fs",
                    type(exc).__name__,
                    attempt,
                    delay,
                )
                try:
                    connection.close()
                except DatabaseError:
                    pass
                close_old_connections()
                end = time.monotonic() + delay
                while time.monotonic() < end:
                    if not self.running:
                        return None
                    time.sleep(0.05)

    def _dead_letter(self, dead: list[DeadLetter]) -> bool:
        """Send bad records to the dead-letter topic; True once the broker acked them all."""
        attempt = 0
        while True:
            failures = []
            for d in dead:
                self.dlq_producer.produce(
                    self.dlq_topic,
                    key=d.msg.key(),
                    value=d.msg.value(),
                    headers=dead_letter_headers(d.msg, d.error),
                    on_delivery=lambda err, m: failures.append(err) if err else None,
                )
            remaining = self.dlq_producer.flush(30)
            if not remaining and not failures:
                for d in dead:
                    logger.warning(
                        "consumer: dead-lettered %s[%d]@%d: %s",
                        d.msg.topic(),
                        d.msg.partition(),
                        d.msg.offset(),
                        d.error,
                    )
                return True
            attempt += 1
            logger.warning(
                "consumer: dead-letter topic %s did not acknowledge (%s); retry %d",
                self.dlq_topic,
                failures[0] if failures else "timeout",
                attempt,
            )
            end = time.monotonic() + ErrorPolicy.backoff(attempt)
            while time.monotonic() < end:
                if not self.running:
                    return False
                time.sleep(0.05)

    def _commit(self, records) -> None:
        last = {}
        for msg in records:
            last[(msg.topic(), msg.partition())] = msg.offset()
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        self.consumer.commit(offsets=offsets, asynchronous=False)


def dead_letter_headers(msg, error: Exception) -> list[tuple[str, str | bytes]]:
    """The original headers plus where the record came from and why it failed."""
    return list(msg.headers() or []) + [
        ("dlq_error_class", type(error).__name__),
        ("dlq_error_message", str(error)[:1000]),
        ("dlq_original_topic", msg.topic()),
        ("dlq_original_partition", str(msg.partition())),
        ("dlq_original_offset", str(msg.offset())),
        ("dlq_time", datetime.now(UTC).isoformat()),
    ]


def _describe(partitions) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing"
