"""Consumer throughput: this consumer against a naive one, same PostgreSQL and broker.

Loads N appointment events (default 100,000) into a 3-partition topic, then:
  (a) `manage.py run_consumer --no-email` as a subprocess: batches, one transaction
      per batch (inbox + notifications + pending email deliveries), a commit per
      batch; the emails are left to a `send_emails` process. Rate = events applied /
      time from the first to the last applied event, sampled from the database by
      this script; peak RSS of the process.
  (a') the same with the email thread on (`run_consumer`'s default), sending every
      email through Django's dummy backend while it consumes: the cost of sharing
      one process (and one GIL) with the email channel.
  (b) a naive consumer in this process: per record, one transaction through the ORM
      (inbox row, two notifications, email deliveries) and a synchronous offset
      commit. It runs over the first M events of the same topic (default 5,000):
      at its pace the whole load would take minutes and tell nothing more.
Both write the same rows for the same records. Prints a table and the ratio a/b;
the last line is JSON with consumer_events_per_s, naive_events_per_s and
consumer_peak_rss_mb.

    .venv/bin/python bench/consumer.py [--quick] [--events N] [--naive-events M]
"""

import argparse
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime

from common import (
    ROOT,
    PeakRss,
    add_broker_argument,
    bench_env,
    machine,
    print_result,
    print_table,
    progress,
    recreate_database,
    setup_django,
    start_broker,
)

from devtools.process import Process

TOPIC = "appointments-bench"
PATIENTS, DOCTORS = 200, 20


def make_users():
    from django.contrib.auth import get_user_model

    User = get_user_model()
    users = User.objects.bulk_create(
        [
            User(username=f"bench-{i}", email=f"bench-{i}@example.com")
            for i in range(PATIENTS + DOCTORS)
        ]
    )
    return [u.id for u in users[:PATIENTS]], [u.id for u in users[PATIENTS:]]


def load_topic(brokers: str, n: int, patients, doctors) -> None:
    """n booked events, keyed by appointment, as the relay publishes them."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    from messaging.topics import ensure_topics

    ensure_topics(
        [TOPIC, f"{TOPIC}.dlq"], admin=AdminClient({"bootstrap.servers": brokers})
    )
    producer = Producer(
        {
            "bootstrap.servers": brokers,
            "linger.ms": 20,
            "compression.type": "lz4",
            "enable.idempotence": True,
        }
    )
    started = time.monotonic()
    for i in range(n):
        appointment = str(uuid.uuid4())
        data = {
            "appointmentId": appointment,
            "patientId": patients[i % len(patients)],
            "doctorId": 1 + i % len(doctors),
            "doctorUserId": doctors[i % len(doctors)],
            "doctorName": "Dr. Bench",
            "date": "2030-05-06",
            "timeSlot": f"{9 + i % 8:02d}:{30 * (i % 2):02d}",
            "reason": "Check-up",
            "status": "booked",
        }
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", str(uuid.uuid4()).encode()),
            ("ce_source", b"/healthcare/appointments"),
            ("ce_type", b"appointment.booked"),
            ("ce_time", datetime.now(UTC).isoformat().encode()),
            ("ce_subject", appointment.encode()),
            ("content-type", b"application/json"),
        ]
        while True:
            try:
                producer.produce(
                    TOPIC,
                    key=appointment.encode(),
                    value=json.dumps(data).encode(),
                    headers=headers,
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if i % 10_000 == 0 or i == n - 1:
            progress("loading the topic", i + 1, n, started)
    assert producer.flush(60) == 0, "the broker did not acknowledge every event"


def inbox_count() -> int:
    from notifications.models import ProcessedEvent

    return ProcessedEvent.objects.count()


def truncate() -> None:
    from django.db import connection

    from notifications.models import EmailDelivery, Notification, ProcessedEvent

    tables = ", ".join(
        m._meta.db_table for m in (EmailDelivery, Notification, ProcessedEvent)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables}")


def run_consumer(
    brokers: str, n: int, batch_size: int, *, email: bool, label: str
) -> dict:
    """(a): run_consumer as a subprocess; the rate from the database, sampled."""
    env = os.environ.copy()
    env.update(
        bench_env(
            brokers,
            CONSUMER_TOPICS=TOPIC,
            CONSUMER_DLQ_TOPIC=f"{TOPIC}.dlq",
            CONSUMER_GROUP=f"bench-consumer-{'email' if email else 'plain'}",
            CONSUMER_BATCH_SIZE=str(
                batch_size
            ),  # the setting's default unless --batch-size
            EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
        )
    )
    argv = [sys.executable, "manage.py", "run_consumer"]
    argv.append("--email" if email else "--no-email")
    log = ROOT / "var" / "bench-consumer.log"
    log.unlink(missing_ok=True)
    proc = Process("run_consumer", argv, log_path=log, env=env, cwd=ROOT).start()
    try:
        with PeakRss(proc.pid) as rss:
            first_at = first_count = None
            started = time.monotonic()
            deadline = started + 600
            while True:
                count = inbox_count()
                now = time.monotonic()
                if count and first_at is None:
                    first_at, first_count = now, count
                if count:
                    progress(label, count, n, first_at)
                if count >= n:
                    break
                if not proc.running or now > deadline:
                    proc.fail("stopped or stalled")
                time.sleep(0.05)
            last_at = time.monotonic()
    finally:
        proc.stop(grace=20)
    elapsed = last_at - first_at
    return {
        "rate": (n - first_count) / elapsed if elapsed > 0 else float("inf"),
        "elapsed": elapsed,
        "rss": rss.peak_mb,
    }


def run_naive(brokers: str, m: int) -> dict:
    """(b): a transaction and a synchronous commit per record, through the ORM."""
    from confluent_kafka import Consumer
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from messaging.config import consumer_config
    from notifications.models import EmailDelivery, Notification, ProcessedEvent
    from notifications.records import parse_record

    User = get_user_model()
    consumer = Consumer(consumer_config("bench-naive"))
    consumer.subscribe([TOPIC])
    done, started = 0, None
    try:
        while done < m:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            started = started or time.monotonic()
            event = parse_record(msg)
            with transaction.atomic():
                if not ProcessedEvent.objects.filter(event_id=event.event_id).exists():
                    ProcessedEvent.objects.create(
                        event_id=event.event_id,
                        event_type=event.event_type,
                        topic=msg.topic(),
                        partition=msg.partition(),
                        offset=msg.offset(),
                    )
                    for planned in event.planned:
                        recipient = User.objects.get(pk=planned.recipient_id)
                        note = Notification.objects.create(
                            recipient=recipient,
                            event_id=event.event_id,
                            appointment_id=event.appointment_id,
                            event_type=event.event_type,
                            message=planned.message,
                        )
                        if recipient.email:
                            EmailDelivery.objects.create(notification=note)
            consumer.commit(message=msg, asynchronous=False)
            done += 1
            if done % 500 == 0 or done == m:
                progress("(b) naive consumer", done, m, started)
    finally:
        consumer.close()
    elapsed = time.monotonic() - started
    return {"rate": done / elapsed, "elapsed": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--naive-events", type=int, default=5_000)
    parser.add_argument("--batch-size", type=int, help="default: CONSUMER_BATCH_SIZE's")
    parser.add_argument(
        "--quick", action="store_true", help="10,000 events, naive 1,000"
    )
    add_broker_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.events, args.naive_events = 10_000, 1_000
    n, m = args.events, min(args.naive_events, args.events)

    recreate_database()
    broker = start_broker(args.broker)
    try:
        setup_django(broker.address)
        from django.conf import settings

        args.batch_size = args.batch_size or settings.CONSUMER["BATCH_SIZE"]
        patients, doctors = make_users()
        load_topic(broker.address, n, patients, doctors)
        from notifications.models import EmailDelivery, Notification

        a = run_consumer(
            broker.address, n, args.batch_size, email=False, label="(a) run_consumer"
        )
        notes, emails = Notification.objects.count(), EmailDelivery.objects.count()
        assert notes == 2 * n, f"expected {2 * n} notifications, found {notes}"
        truncate()
        a2 = run_consumer(
            broker.address,
            n,
            args.batch_size,
            email=True,
            label="(a') with email thread",
        )
        sent = EmailDelivery.objects.filter(status=EmailDelivery.Status.SENT).count()
        truncate()
        b = run_naive(broker.address, m)
    finally:
        broker.stop()

    print_table(
        f"Consumer throughput ({machine()}; PostgreSQL; Tansu broker; batch {args.batch_size})",
        ["consumer", "events", "seconds", "events/s", "peak RSS MB"],
        [
            ["(a) run_consumer --no-email", n, a["elapsed"], a["rate"], a["rss"]],
            [
                "(a') run_consumer, email thread on",
                n,
                a2["elapsed"],
                a2["rate"],
                a2["rss"],
            ],
            [
                "(b) naive: txn + sync commit per record",
                m,
                b["elapsed"],
                b["rate"],
                "-",
            ],
        ],
    )
    print(
        f"\n  ratio a/b: {a['rate'] / b['rate']:.1f}x   ratio a'/b: {a2['rate'] / b['rate']:.1f}x"
    )
    print(
        f"  each event: 1 inbox row, {notes // n} notifications, {emails / n:.0f} email deliveries;"
        f" (a') had sent {sent:,} of {emails:,} emails when the last event was applied"
    )
    print_result(
        {
            "broker": args.broker,
            "consumer_events_per_s": round(a["rate"]),
            "naive_events_per_s": round(b["rate"]),
            "consumer_peak_rss_mb": round(a["rss"], 1),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
