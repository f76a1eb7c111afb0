"""Consumer throughput: this consumer against a naive one, same PostgreSQL and broker.

Loads N appointment events (default 100,000) into a 3-partition topic, then:
  (a) `manage.py run_consumer --no-email` as a subprocess: batches, one transaction
      per batch (inbox + notifications + pending email deliveries), a commit per
      batch; the emails are left to a `send_emails` process (not running meanwhile).
      Rate = events applied / time from the first to the last applied batch, read
      from the inbox's processed_at afterwards; progress comes from the group's
      committed offsets, so watching costs PostgreSQL nothing. Also the CPU per
      event of the consumer process and of its PostgreSQL backend, and peak RSS.
  (a') the same with the email thread on (`run_consumer`'s default), sending every
      email through Django's dummy backend while it consumes: the cost of sharing
      one process (and one GIL) with the email channel.
  (b) a naive consumer in this process: per record, one transaction through the ORM
      (inbox row, two notifications, email deliveries) and a synchronous offset
      commit. It runs over the first M events of the same topic (default 5,000):
      at its pace the whole load would take minutes and tell nothing more (and
      it stops after 60 s).
  (h) with --history [N]: the tables are filled with N old events' rows (default
      1,000,000: N inbox rows, 2N notifications, 2N sent email deliveries), the
      plan of the inbox check is printed (EXPLAIN ANALYZE), and (a) runs again.
All write the same rows for the same records. Prints a table and the ratio a/b;
the last line is JSON: consumer_events_per_s, naive_events_per_s,
consumer_email_thread_events_per_s, consumer_cpu_us_per_event,
postgres_cpu_us_per_event, consumer_peak_rss_mb, and with --history history_rows
(events' worth: inbox rows), consumer_events_per_s_history, history_ratio.

    .venv/bin/python bench/consumer.py [--quick] [--events N] [--naive-events M]
                                       [--history [N]] [--broker kafka|tansu]
"""

import argparse
import functools
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
from consumer_history import explain_inbox_check, fill_history

from devtools.process import Process, cpu_seconds

TOPIC = "appointments-bench"
PATIENTS, DOCTORS = 200, 20
APP_NAME = "bench-consumer"  # the consumer's PostgreSQL application_name


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


def booked_event(i: int, patients, doctors, event_id: uuid.UUID):
    """(key, value, headers) of the i-th booked event, as the relay publishes it.

    Event ids are time-ordered (relay.models.uuid7), as the outbox makes them;
    appointment ids are random, as the appointments table makes them.
    """
    appointment = str(uuid.uuid4())
    data = {
        "appointmentId": appointment,
        "patientId": patients[i % len(patients)],
        "doctorId": 1 + i % len(doctors),
        "doctorUserId": doctors[i % len(doctors)],
        "doctorName": "Dr. Bench",
        "date": "2030-05-06",
        "timeSlot": f"{9 + i % 8:02d}:{30 * (i % 2):02d}",
        "status": "booked",
    }
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(event_id).encode()),
        ("ce_source", b"/healthcare/appointments"),
        ("ce_type", b"appointment.booked"),
        ("ce_time", datetime.now(UTC).isoformat().encode()),
        ("ce_subject", appointment.encode()),
        ("content-type", b"application/json"),
    ]
    return appointment.encode(), json.dumps(data).encode(), headers


def load_topic(brokers: str, n: int, patients, doctors) -> None:
    """n booked events, keyed by appointment, as the relay publishes them."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    from messaging.topics import ensure_topics
    from relay.models import uuid7

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
        key, value, headers = booked_event(i, patients, doctors, uuid7())
        while True:
            try:
                producer.produce(TOPIC, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if i % 10_000 == 0 or i == n - 1:
            progress("loading the topic", i + 1, n, started)
    assert producer.flush(60) == 0, "the broker did not acknowledge every event"


class GroupProgress:
    """How many records a group has committed on TOPIC: asked of the broker.

    The bench producer is not transactional, so offsets count records.
    """

    def __init__(self, brokers: str, group: str):
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({"bootstrap.servers": brokers, "group.id": group})
        topic = self.consumer.list_topics(TOPIC, timeout=10).topics[TOPIC]
        self.partitions = [TopicPartition(TOPIC, p) for p in topic.partitions]
        self.last = 0

    def committed(self) -> int:
        """The sum of committed offsets (the last answer when the broker has none)."""
        from confluent_kafka import KafkaException

        try:
            offsets = self.consumer.committed(self.partitions, timeout=5)
        except KafkaException:  # e.g. NOT_COORDINATOR while the group settles
            return self.last
        self.last = sum(max(tp.offset, 0) for tp in offsets)
        return self.last

    def close(self) -> None:
        self.consumer.close()


def db_now() -> datetime:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def applied_since(since: datetime) -> tuple[int, int, float]:
    """Inbox rows since ``since``, those of the first batch, first to last batch (s).

    A batch's rows share one processed_at.
    """
    from django.db import connection

    from notifications.models import ProcessedEvent

    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH run AS (SELECT processed_at FROM {ProcessedEvent._meta.db_table}
                             WHERE processed_at >= %s)
                SELECT count(*),
                       count(*) FILTER (WHERE processed_at
                                        = (SELECT min(processed_at) FROM run)),
                       extract(epoch FROM max(processed_at) - min(processed_at))
                FROM run""",
            [since],
        )
        count, first, span = cursor.fetchone()
    return count, first, float(span or 0)


def backends(since: datetime) -> list[int]:
    """The consumer's PostgreSQL backends (its connections opened since ``since``)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = %s AND backend_start >= %s",
            [APP_NAME, since],
        )
        return [pid for (pid,) in cursor.fetchall()]


def cpu_of(pids: list[int]) -> float:
    """CPU seconds of these processes (0 for one /proc cannot show)."""
    return sum(cpu_seconds(pid) for pid in pids)


def watch(proc: Process, group: GroupProgress, n: int, label: str, since) -> dict:
    """Wait until the group has committed n records; CPU used meanwhile, per event.

    CPU is counted from the first commit on, for the consumer process and for its
    PostgreSQL backends (PostgreSQL on this machine; 0 otherwise).
    """
    started = time.monotonic()
    first, shown = None, 0
    while True:
        done = group.committed()
        if done and first is None:
            pids = backends(since)
            first = (done, cpu_seconds(proc.pid), cpu_of(pids))
        if done > shown and (done - shown >= n // 20 or done >= n):
            progress(label, done, n, started)
            shown = done
        if done >= n:
            break
        if not proc.running or time.monotonic() - started > 600:
            proc.fail("stopped or stalled")
        time.sleep(0.05)
    events = max(1, n - first[0])
    return {
        "cpu_us": (cpu_seconds(proc.pid) - first[1]) / events * 1e6,
        "pg_us": (cpu_of(pids) - first[2]) / events * 1e6,
    }


def run_consumer(
    brokers: str, n: int, batch_size: int, *, email: bool, group: str, label: str
):
    """(a): run_consumer as a subprocess; the rate from the inbox's timestamps."""
    env = os.environ.copy()
    env.update(
        bench_env(
            brokers,
            CONSUMER_TOPICS=TOPIC,
            CONSUMER_DLQ_TOPIC=f"{TOPIC}.dlq",
            CONSUMER_GROUP=group,
            CONSUMER_BATCH_SIZE=str(batch_size),
            EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
            PGAPPNAME=APP_NAME,
        )
    )
    argv = [sys.executable, "manage.py", "run_consumer"]
    argv.append("--email" if email else "--no-email")
    log = ROOT / "var" / "bench-consumer.log"
    log.unlink(missing_ok=True)
    since = db_now()
    proc = Process("run_consumer", argv, log_path=log, env=env, cwd=ROOT).start()
    committed = GroupProgress(brokers, group)
    try:
        with PeakRss(proc.pid) as rss:
            cpu = watch(proc, committed, n, label, since)
    finally:
        proc.stop(grace=20)
        committed.close()
    count, first, span = applied_since(since)
    assert count == n, f"expected {n} inbox rows, found {count}"
    rate = (count - first) / span if span > 0 else float("inf")
    return {"rate": rate, "elapsed": span, "rss": rss.peak_mb, **cpu}


def run_naive(brokers: str, m: int, seconds: float) -> dict:
    """(b): a transaction and a synchronous commit per record, through the ORM.

    Stops after m records or ``seconds``, whichever comes first.
    """
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
        while done < m and not (started and time.monotonic() - started > seconds):
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
    if done < m:
        progress("(b) naive consumer (time is up)", done, done, started)
    elapsed = time.monotonic() - started
    return {"rate": done / elapsed, "elapsed": elapsed, "done": done}


def truncate() -> None:
    from django.db import connection

    from notifications.models import EmailDelivery, Notification, ProcessedEvent

    tables = ", ".join(
        m._meta.db_table for m in (EmailDelivery, Notification, ProcessedEvent)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables}")


def row_counts(n: int) -> dict:
    """What (a) wrote per event; fails unless every event got both notifications."""
    from notifications.models import EmailDelivery, Notification

    notes, emails = Notification.objects.count(), EmailDelivery.objects.count()
    assert notes == 2 * n, f"expected {2 * n} notifications, found {notes}"
    pending = EmailDelivery.objects.filter(status=EmailDelivery.Status.PENDING)
    return {"notes": notes, "emails": emails, "pending": pending.count()}


def sent_count() -> int:
    from notifications.models import EmailDelivery

    return EmailDelivery.objects.filter(status=EmailDelivery.Status.SENT).count()


def measure_history(args, consume, patients, doctors) -> dict:
    """(h): fill the tables with old rows, show the inbox check's plan, run (a) again."""
    fill_history(args.history, patients, doctors)
    plan = explain_inbox_check(
        lambda i, event_id: booked_event(i, patients, doctors, event_id)
    )
    print(f"\nThe consumer's batch statement over {args.history:,} events of history")
    print("(500 events, half of them already in the inbox; rolled back):\n")
    print("  " + plan.replace("\n", "\n  "))
    return consume(email=False, group="bench-h", label="(h) over the history")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--naive-events", type=int, default=5_000)
    parser.add_argument(
        "--naive-seconds", type=float, default=60, help="(b) stops after this long"
    )
    parser.add_argument("--batch-size", type=int, help="default: CONSUMER_BATCH_SIZE's")
    parser.add_argument(
        "--history",
        type=int,
        nargs="?",
        const=-1,
        metavar="N",
        help="then fill the tables with N old events (default 1,000,000; "
        "100,000 with --quick) and measure (a) again",
    )
    parser.add_argument(
        "--quick", action="store_true", help="10,000 events, naive 1,000"
    )
    add_broker_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.events, args.naive_events, args.naive_seconds = 10_000, 1_000, 15
    if args.history == -1:
        args.history = 100_000 if args.quick else 1_000_000
    args.naive_events = min(args.naive_events, args.events)
    return args


def measure(args, broker) -> dict:
    from django.conf import settings

    args.batch_size = args.batch_size or settings.CONSUMER["BATCH_SIZE"]
    patients, doctors = make_users()
    load_topic(broker.address, args.events, patients, doctors)
    consume = functools.partial(
        run_consumer, broker.address, args.events, args.batch_size
    )
    runs = {"a": consume(email=False, group="bench-a", label="(a) run_consumer")}
    runs["rows"] = row_counts(args.events)
    truncate()
    runs["a2"] = consume(email=True, group="bench-a2", label="(a') email thread")
    runs["sent"] = sent_count()
    truncate()
    runs["b"] = run_naive(broker.address, args.naive_events, args.naive_seconds)
    truncate()
    if args.history:
        runs["h"] = measure_history(args, consume, patients, doctors)
    return runs


def consumer_row(label: str, n: int, run: dict) -> list:
    return [
        label,
        n,
        run["elapsed"],
        run["rate"],
        run["cpu_us"],
        run["pg_us"],
        run["rss"],
    ]


def report(args, runs: dict) -> None:
    n, a, a2, b = args.events, runs["a"], runs["a2"], runs["b"]
    rows = [
        consumer_row("(a) run_consumer --no-email", n, a),
        consumer_row("(a') run_consumer, email thread on", n, a2),
        [
            "(b) naive: txn + sync commit per record",
            b["done"],
            b["elapsed"],
            b["rate"],
            "-",
            "-",
            "-",
        ],
    ]
    if "h" in runs:
        rows.append(
            consumer_row(
                f"(h) (a) over {args.history:,} events of history", n, runs["h"]
            )
        )
    print_table(
        f"Consumer throughput ({machine()}; PostgreSQL; {args.broker} broker;"
        f" batch {args.batch_size})",
        [
            "consumer",
            "events",
            "seconds",
            "events/s",
            "CPU us/event",
            "PG backend us/event",
            "peak RSS MB",
        ],
        rows,
    )
    print(
        f"\n  ratio a/b: {a['rate'] / b['rate']:.1f}x"
        f"   ratio a'/b: {a2['rate'] / b['rate']:.1f}x"
    )
    if "h" in runs:
        print(
            f"  with history / empty (h/a): {runs['h']['rate'] / a['rate']:.2f}"
            " (target >= 0.85)"
        )
    r = runs["rows"]
    print(
        f"  each event: 1 inbox row, {r['notes'] // n} notifications,"
        f" {r['emails'] / n:.0f} email deliveries ({r['pending']:,} pending after (a));"
        f" (a') had sent {runs['sent']:,} of {r['emails']:,} emails"
        " when the last event was applied"
    )


def result(args, runs: dict) -> dict:
    a = runs["a"]
    out = {
        "broker": args.broker,
        "relay_mode": "poll",
        "consumer_events_per_s": round(a["rate"]),
        "naive_events_per_s": round(runs["b"]["rate"]),
        "consumer_email_thread_events_per_s": round(runs["a2"]["rate"]),
        "consumer_cpu_us_per_event": round(a["cpu_us"], 1),
        "postgres_cpu_us_per_event": round(a["pg_us"], 1),
        "consumer_peak_rss_mb": round(a["rss"], 1),
    }
    if "h" in runs:
        out["history_rows"] = args.history
        out["consumer_events_per_s_history"] = round(runs["h"]["rate"])
        out["history_ratio"] = round(runs["h"]["rate"] / a["rate"], 3)
    return out


def main() -> int:
    args = parse_args()
    recreate_database()
    broker = start_broker(args.broker)
    try:
        setup_django(broker.address)
        runs = measure(args, broker)
    finally:
        broker.stop()
    report(args, runs)
    print_result(result(args, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
