"""Helpers for the consumer tests: CloudEvents records straight onto a topic, counts."""

import json
import uuid
import urllib.request
from datetime import UTC, datetime

from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient


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


def produce(brokers: str, topic: str, records: list[dict], *, one_per_request=False) -> None:
    """Produce and wait for every acknowledgement."""
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
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    result = admin.list_consumer_group_offsets([request])[group].result()
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def metric_value(text: str, name: str) -> float:
    """The sum of every sample of a metric (all label sets) in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total
