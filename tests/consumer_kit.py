"""Helpers for the consumer tests: CloudEvents records straight onto a topic, counts."""

import json
import os
import socketserver
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime

from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from django.db.models import Count

from devtools.records import Record  # noqa: F401 (the tests import it from here)
from messaging.topics import ensure_topics
from notifications.models import Notification, ProcessedEvent
from relay.events import Event

# A short session for consumer processes in tests, so that a killed member is
# evicted soon. Apache Kafka refuses one below group.min.session.timeout.ms (6000);
# Tansu allows 3000, and there a join takes about half the session.
FAST_GROUP = {
    "KAFKA_SESSION_TIMEOUT_MS": "6000"
    if os.environ.get("TEST_BROKER") == "kafka"
    else "3000"
}


def run_consumer(start_process, *args: str, env=None, name=None):
    """Start `manage.py run_consumer *args` as a real process, with FAST_GROUP."""
    return start_process(
        "run_consumer", *args, env={**FAST_GROUP, **(env or {})}, name=name
    )


def event_record(
    *,
    patient_id: int,
    doctor_user_id: int,
    event_type: str = "appointment.booked",
    event_id: str | None = None,
    appointment_id: str | None = None,
    data: dict | None = None,
) -> dict:
    """One appointment event as the relay publishes it (CloudEvents, binary mode)."""
    appointment_id = appointment_id or str(uuid.uuid4())
    body = {
        "appointmentId": appointment_id,
        "patientId": patient_id,
        "doctorId": 1,
        "doctorUserId": doctor_user_id,
        "doctorName": "Dr. Smith",
        "date": "2030-05-06",
        "timeSlot": "10:00",
        "reason": "Check-up",
        "status": "booked",
    }
    body.update(data or {})
    return {
        "key": appointment_id.encode(),
        "value": json.dumps(body).encode(),
        "headers": [
            ("ce_specversion", b"1.0"),
            ("ce_id", (event_id or str(uuid.uuid4())).encode()),
            ("ce_source", b"/healthcare/appointments"),
            ("ce_type", event_type.encode()),
            ("ce_time", datetime.now(UTC).isoformat().encode()),
            ("ce_subject", appointment_id.encode()),
            ("content-type", b"application/json"),
        ],
    }


def event_id_of(record: dict) -> str:
    return dict(record["headers"])["ce_id"].decode()


def produce(
    brokers: str, topic: str, records: list[dict], *, one_per_request=False
) -> None:
    """Produce and wait for every acknowledgement.

    The topic and its dead-letter topic are made first, as run_relay and run_consumer
    make them (the broker would create a missing topic with its own partition count).
    """
    ensure_topics(
        [topic, f"{topic}.dlq"], admin=AdminClient({"bootstrap.servers": brokers})
    )
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 2})
    failures = []
    for r in records:
        producer.produce(
            topic,
            key=r.get("key"),
            value=r.get("value"),
            headers=r.get("headers"),
            on_delivery=lambda err, msg: failures.append(err) if err else None,
        )
        if one_per_request:
            producer.flush(10)
        else:
            producer.poll(0)
    assert producer.flush(30) == 0 and not failures, failures


def committed_offsets(brokers: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of topic (missing: none committed)."""
    admin = AdminClient({"bootstrap.servers": brokers})
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in partitions]
    )
    result = admin.list_consumer_group_offsets([request])[group].result()
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def scrape(port: int) -> str:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/metrics", timeout=5
    ) as response:
        return response.read().decode()


def metric_value(text: str, name: str) -> float:
    """The sum of every sample of a metric (all label sets) in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


def make_people(make_user) -> list:
    """Two patients and two doctors' users."""
    return [make_user() for _ in range(4)]


def stream_of(people, n: int) -> list[dict]:
    """n events alternating between the patients and the doctors of ``people``."""
    return [
        event_record(patient_id=people[i % 2].id, doctor_user_id=people[2 + i % 2].id)
        for i in range(n)
    ]


def booked_events(people, n: int) -> list[Event]:
    """n appointment.booked events, as the appointment service enqueues them."""
    events = []
    for i in range(n):
        record = event_record(
            patient_id=people[i % 2].id, doctor_user_id=people[2 + i % 2].id
        )
        data = json.loads(record["value"])
        events.append(
            Event(
                type="appointment.booked",
                aggregatetype="appointment",
                aggregateid=data["appointmentId"],
                data=data,
                source="/healthcare/appointments",
            )
        )
    return events


def assert_exactly_once(records: list[dict]) -> None:
    """One inbox row per event; one notification per event and recipient, no other."""
    expected = {event_id_of(r) for r in records}
    assert ProcessedEvent.objects.count() == len(expected)
    per_event = dict(
        Notification.objects.values_list("event_id").annotate(n=Count("id")).order_by()
    )
    assert {str(e) for e in per_event} == expected
    assert set(per_event.values()) == {2}
    pairs = Notification.objects.values_list("event_id", "recipient_id")
    assert len(set(pairs)) == len(pairs) == 2 * len(expected)


def produce_slowly(
    brokers: str, topic: str, records: list[dict], per_second=300
) -> None:
    """Produce in small steps at about per_second, so the stream spans what a test does."""
    step = max(1, per_second // 10)
    for start in range(0, len(records), step):
        produce(brokers, topic, records[start : start + step])
        time.sleep(0.1)


class SmtpServer:
    """A minimal SMTP server on a port: accepts every message and keeps it."""

    def __init__(self, port: int):
        self.messages: list[dict] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.wfile.write(b"220 test ESMTP\r\n")
                message = {"to": [], "data": b""}
                while line := self.rfile.readline():
                    command = line.strip().upper()
                    if command.startswith(b"RCPT TO:"):
                        message["to"].append(line.strip()[8:].strip(b" <>").decode())
                    if command == b"DATA":
                        self.wfile.write(b"354 go ahead\r\n")
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            message["data"] += chunk
                        outer.messages.append(message)
                        message = {"to": [], "data": b""}
                        self.wfile.write(b"250 queued\r\n")
                    elif command == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    elif command.startswith(b"EHLO"):
                        self.wfile.write(b"250-test\r\n250 OK\r\n")
                    else:
                        self.wfile.write(b"250 OK\r\n")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
