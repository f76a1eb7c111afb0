"""The email channel: send pending EmailDelivery rows with retries, away from Kafka.

The consumer writes one pending delivery per notification whose recipient has an
address, in the same transaction as the notification. This loop claims due rows
(``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several consumer processes
share the work), sends them through Django's email backend and records the outcome.
A claim pushes ``next_attempt_at`` out by a lease (``EMAIL_LEASE_SECONDS``): a
sender that dies mid-send leaves the row to be sent again after the lease (email is
at-least-once).
"""

import functools
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from core.db import DATABASE_ERRORS
from core.loops import StopOnSignal, backoff_delay
from notifications import metrics
from notifications.handlers import email_subject
from notifications.inbox import reset_connection, table_names
from notifications.models import EmailDelivery, Notification

logger = logging.getLogger("notifications.email")


class NoAddress(Exception):
    """The recipient has no email address: retrying cannot help."""


def retry_delay(attempts: int, base_seconds: float) -> timedelta:
    """base, 2*base, 4*base, ... capped at one hour."""
    return timedelta(seconds=backoff_delay(attempts, base=base_seconds, cap=3600.0))


class EmailSender(StopOnSignal):
    """Send due notification emails until stopped."""

    loop_name = "send_emails"
    stop_message = "finishing the round in hand"
    logger = logger
    # A consumer wakes the sender after every batch it applies, which at a low rate
    # is one notification each. Rounds start at most this often unless one fills,
    # so that a round sends several: a round costs two statements and a mail
    # connection whatever it sends (at 100 events/s in bench/e2e.py the sender
    # thread was about half of the consumer process's CPU, one email a round).
    gather = 0.05  # seconds

    def __init__(
        self,
        *,
        batch_size: int | None = None,
        poll_interval: float | None = None,
        max_attempts: int | None = None,
        retry_seconds: float | None = None,
        lease_seconds: float | None = None,
    ):
        conf = settings.NOTIFICATION_EMAIL
        self.lease = timedelta(seconds=lease_seconds or settings.EMAIL_LEASE_SECONDS)
        self.batch_size = batch_size or conf["BATCH_SIZE"]
        self.poll_interval = poll_interval or conf["POLL_INTERVAL_MS"] / 1000
        self.max_attempts = max_attempts or conf["MAX_ATTEMPTS"]
        self.retry_seconds = retry_seconds or conf["RETRY_SECONDS"]
        self.running = True
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------
    def start_thread(self) -> None:
        self._thread = threading.Thread(
            target=self.run, name="email-sender", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        """New deliveries were committed: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 3) -> None:
        """Stop after the round in hand; wait at most ``timeout`` for the thread."""
        self.running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> int:
        """Send until stopped; return the number of emails sent."""
        sent, failures = 0, 0
        try:
            while self.running:
                started = time.monotonic()
                try:
                    claimed, done = self.send_due()
                    sent += done
                    failures = 0
                except DATABASE_ERRORS as exc:
                    failures += 1
                    claimed = 0
                    logger.warning(
                        "email: database unavailable (%s); retrying", type(exc).__name__
                    )
                    reset_connection()
                # A bug must not stop the channel for good: log it, back off, go on.
                except Exception:
                    failures += 1
                    claimed = 0
                    logger.exception("email: sending round failed; retrying")
                if claimed < self.batch_size:
                    # poll interval, doubled after each failed round, at most 32 times
                    idle = backoff_delay(
                        failures + 1,
                        base=self.poll_interval,
                        cap=self.poll_interval * 32,
                    )
                    self._wake.wait(idle)
                    self._wake.clear()
                    pause = started + self.gather - time.monotonic()
                    if pause > 0 and self.running:
                        time.sleep(pause)
        finally:
            connection.close()
        return sent

    # -- one round ---------------------------------------------------------
    def send_due(self) -> tuple[int, int]:
        """Claim, send and record one batch; return (claimed, sent)."""
        deliveries = self.claim()
        if not deliveries:
            return 0, 0
        sent, failed = self._send(deliveries)
        self._record(sent, failed)
        return len(deliveries), len(sent)

    def claim(self) -> list["Claimed"]:
        """Lock due deliveries, push them out by the lease, return them with their data."""
        now = timezone.now()
        if connection.vendor == "postgresql":
            return _claim_postgresql(now, now + self.lease, self.batch_size)
        return _claim_generic(now, now + self.lease, self.batch_size)

    def _send(self, deliveries: list["Claimed"]):
        sent, failed = [], []
        backend = get_connection()
        try:
            backend.open()
        except Exception as exc:  # the mail server is down: every delivery waits
            return [], [(d, exc) for d in deliveries]
        try:
            for d in deliveries:
                if not d.address:
                    failed.append((d, NoAddress(d.missing)))
                    continue
                message = EmailMessage(
                    subject=email_subject(d.event_type),
                    body=d.message,
                    from_email=settings.DEFAULT_FROM_EMAIL,
                    to=[d.address],
                    connection=backend,
                )
                try:
                    message.send()
                except Exception as exc:  # SMTP, socket or backend errors: retry later
                    failed.append((d, exc))
                else:
                    sent.append(d)
        finally:
            try:
                backend.close()
            except Exception as exc:
                logger.debug("email: closing the mail connection failed: %s", exc)
        return sent, failed

    def _record(self, sent: list["Claimed"], failed) -> None:
        """One UPDATE for the sent; the failed (rare) with it in one transaction."""
        now = timezone.now()
        if not failed:
            self._record_sent(sent, now)
            return
        retried = []
        for d, exc in failed:
            give_up = d.attempts >= self.max_attempts or isinstance(exc, NoAddress)
            retried.append(
                EmailDelivery(
                    pk=d.notification_id,
                    status=(
                        EmailDelivery.Status.FAILED
                        if give_up
                        else EmailDelivery.Status.PENDING
                    ),
                    last_error=f"{type(exc).__name__}: {exc}"[:2000],
                    next_attempt_at=now + retry_delay(d.attempts, self.retry_seconds),
                )
            )
            metrics.EMAIL_FAILURES.inc()
            if give_up:
                metrics.EMAILS_GIVEN_UP.inc()
            logger.warning(
                "email: notification %s failed (attempt %d%s): %s",
                d.notification_id,
                d.attempts,
                ", giving up" if give_up else "",
                type(exc).__name__,
            )
        with transaction.atomic():
            self._record_sent(sent, now)
            EmailDelivery.objects.bulk_update(
                retried, ["status", "last_error", "next_attempt_at"]
            )

    @staticmethod
    def _record_sent(sent: list["Claimed"], now) -> None:
        if sent:
            EmailDelivery.objects.filter(
                pk__in=[d.notification_id for d in sent]
            ).update(status=EmailDelivery.Status.SENT, sent_at=now, last_error="")
            metrics.EMAILS_SENT.inc(len(sent))


@dataclass(frozen=True)
class Claimed:
    """A delivery claimed for this round: its row's key and counters, and its email."""

    notification_id: int
    attempts: int
    next_attempt_at: datetime
    event_type: str
    message: str
    address: str
    # why there is no address, when there is none
    missing: str = "the recipient has no email address"


_GONE = "the notification or its recipient no longer exists"

_PG_CLAIM_SQL = """
    WITH due AS (
        SELECT notification_id FROM {emails}
        WHERE status = '{pending}' AND next_attempt_at <= %s
        ORDER BY next_attempt_at
        LIMIT %s
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE {emails} d SET attempts = d.attempts + 1, next_attempt_at = %s
        FROM due WHERE d.notification_id = due.notification_id
        RETURNING d.notification_id, d.attempts, d.next_attempt_at
    )
    SELECT c.notification_id, c.attempts, c.next_attempt_at, n.event_type, n.message,
           u.{address}, n.id IS NOT NULL AND u.{user_pk} IS NOT NULL
    FROM claimed c
    LEFT JOIN {notes} n ON n.id = c.notification_id
    LEFT JOIN {users} u ON u.{user_pk} = n.recipient_id
    ORDER BY c.notification_id
"""


@functools.cache
def _claim_sql() -> str:
    return _PG_CLAIM_SQL.format(
        **table_names(), pending=EmailDelivery.Status.PENDING.value
    )


def _claim_postgresql(now, lease_until, limit: int) -> list[Claimed]:
    """Lock, lease and read the due deliveries in one statement (its own transaction):
    through the ORM a round cost three statements, two transactions and three model
    instances per email, more than the consumer's own batch at a low rate."""
    connection.ensure_connection()
    with (
        connection.wrap_database_errors,
        psycopg.Cursor(connection.connection) as cursor,
    ):
        cursor.execute(_claim_sql(), [now, limit, lease_until])
        rows = cursor.fetchall()
    return [
        Claimed(pk, attempts, at, kind or "", message or "", address or "")
        if exists
        else Claimed(pk, attempts, at, "", "", "", _GONE)
        for pk, attempts, at, kind, message, address, exists in rows
    ]


@transaction.atomic
def _claim_generic(now, lease_until, limit: int) -> list[Claimed]:
    """The same through the ORM (SQLite): rows are locked by the transaction."""
    ids = list(
        EmailDelivery.objects.due(now)
        .select_for_update(skip_locked=True)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    if not ids:
        return []
    EmailDelivery.objects.filter(pk__in=ids).update(
        attempts=F("attempts") + 1, next_attempt_at=lease_until
    )
    email = get_user_model().get_email_field_name()
    rows = EmailDelivery.objects.filter(pk__in=ids).order_by("pk")
    found = {
        row[0]: row[1:]
        for row in Notification.objects.filter(pk__in=ids).values_list(
            "pk", "event_type", "message", f"recipient__{email}"
        )
    }
    claimed = []
    for pk, attempts, at in rows.values_list("pk", "attempts", "next_attempt_at"):
        if pk in found:
            kind, message, address = found[pk]
            claimed.append(Claimed(pk, attempts, at, kind, message, address or ""))
        else:
            claimed.append(Claimed(pk, attempts, at, "", "", "", _GONE))
    return claimed
