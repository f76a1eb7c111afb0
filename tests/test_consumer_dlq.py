"""Poison records go to the dead-letter topic and the consumer goes on; dlq_replay."""

from datetime import datetime

import pytest

from notifications.models import Notification, ProcessedEvent
from tests.broker import free_port
from tests.conftest import wait_until
from tests.consumer_kit import (
    committed_offsets,
    event_id_of,
    event_record,
    metric_value,
    produce,
    run_consumer,
    scrape,
)
from tests.kafka_utils import headers_of, read_topic

pytestmark = pytest.mark.django_db(transaction=True)


def _without(record: dict, *names: str) -> dict:
    return {
        **record,
        "headers": [(k, v) for k, v in record["headers"] if k not in names],
    }


def test_each_kind_of_poison_record_is_dead_lettered_and_the_consumer_continues(
    broker, topic, start_process, make_user
):
    patient, doctor = (
        make_user(email="pat@example.com"),
        make_user(email="doc@example.com"),
    )
    ok = dict(patient_id=patient.id, doctor_user_id=doctor.id)
    good = [event_record(**ok) for _ in range(3)]
    poison = {
        "not JSON": (
            {**event_record(**ok), "value": b"{not json"},
            "InvalidEvent",
            "value is not JSON",
        ),
        "no CloudEvents headers": (
            _without(event_record(**ok), "ce_id", "ce_type"),
            "InvalidEvent",
            "missing CloudEvents headers: ce_id, ce_type",
        ),
        "unknown type": (
            event_record(**ok, event_type="appointment.teleported"),
            "InvalidEvent",
            "unknown event type 'appointment.teleported'",
        ),
        "invalid data": (
            event_record(**ok, data={"patientId": "not-a-number"}),
            "InvalidEvent",
            "malformed id",
        ),
        "handler error": (
            event_record(**ok, data={"date": "2030-02-30"}),
            "ValueError",
            "day is out of range for month",
        ),
        "unknown recipient": (
            event_record(patient_id=patient.id, doctor_user_id=doctor.id + 10_000),
            "InvalidEvent",
            f"unknown recipient user {doctor.id + 10_000}",
        ),
    }
    duplicate = good[0]
    stream = [good[0], *[p[0] for p in poison.values()], good[1], duplicate, good[2]]
    produce(broker.address, topic, stream)

    port = free_port()
    consumer = run_consumer(start_process, "--metrics-port", str(port), "--no-email")
    applied = wait_until(lambda: ProcessedEvent.objects.count() == 3, timeout=40)
    assert applied, consumer.output

    dead = read_topic(broker.address, f"{topic}.dlq", expect=len(poison))
    assert len(dead) == len(poison), consumer.output
    originals = {
        (r.value(), r.key()): r
        for r in read_topic(broker.address, topic, expect=len(stream))
    }
    by_value = {}
    for d in dead:
        h = headers_of(d)
        original = originals[(d.value(), d.key())]
        assert h["dlq_original_topic"] == topic
        assert (int(h["dlq_original_partition"]), int(h["dlq_original_offset"])) == (
            original.partition(),
            original.offset(),
        )
        assert datetime.fromisoformat(h["dlq_time"]).tzinfo is not None
        # the original headers travel with it, unchanged and first
        assert d.headers()[: len(original.headers())] == original.headers()
        by_value[d.value()] = h
    for name, (record, error_class, message) in poison.items():
        h = by_value[record["value"]]
        assert h["dlq_error_class"] == error_class, name
        assert message in h["dlq_error_message"], (name, h["dlq_error_message"])

    # the consumer is still running and applies what comes next
    later = event_record(**ok)
    produce(broker.address, topic, [later])
    assert wait_until(lambda: ProcessedEvent.objects.count() == 4, timeout=20), (
        consumer.output
    )
    assert consumer.proc.poll() is None

    # two notifications per good event, none for a poison record or the duplicate
    events = [*good, later]
    assert Notification.objects.count() == 2 * len(events)
    for record in events:
        assert Notification.objects.filter(event_id=event_id_of(record)).count() == 2
    assert "skipped 1 duplicate events" in consumer.output

    # every record's offset is committed, the dead-lettered ones included
    total = len(stream) + 1
    assert wait_until(
        lambda: (
            sum(committed_offsets(broker.address, f"group-{topic}", topic).values())
            == total
        )
    )
    # lag per partition, from the fetch responses: nothing left behind
    lag_lines = [
        f'notifications_consumer_lag{{partition="{p}",topic="{topic}"}} 0.0'
        for p in range(3)
    ]
    assert wait_until(lambda: all(line in scrape(port) for line in lag_lines)), scrape(
        port
    )
    metrics = scrape(port)
    assert metric_value(metrics, "notifications_consumer_records_total") == total
    assert metric_value(metrics, "notifications_consumer_dead_letters_total") == len(
        poison
    )
    assert (
        'notifications_consumer_dead_letters_total{error="ValueError"} 1.0' in metrics
    )
    assert metric_value(metrics, "notifications_consumer_duplicates_total") == 1
    assert metric_value(metrics, "notifications_consumer_notifications_total") == 8
    assert (
        metric_value(metrics, "notifications_consumer_event_delay_seconds_count") == 4
    )
    assert consumer.terminate() == 0


def test_dlq_replay_sends_dead_letters_back_once_after_a_fix(
    broker, topic, start_process, make_user, django_user_model
):
    patient, doctor = make_user(), make_user()
    missing_id = doctor.id + 10_000
    fixable = event_record(patient_id=patient.id, doctor_user_id=missing_id)
    hopeless = {
        **event_record(patient_id=patient.id, doctor_user_id=doctor.id),
        "value": b"oops",
    }
    produce(broker.address, topic, [fixable, hopeless])
    consumer = run_consumer(start_process, "--no-email")
    dlq = f"{topic}.dlq"
    assert len(read_topic(broker.address, dlq, expect=2)) == 2, consumer.output

    dry = start_process("dlq_replay", "--dry-run", name="dry-run")
    assert dry.proc.wait(30) == 0, dry.output
    assert "2 dead letter(s)" in dry.output and "dry run: nothing sent" in dry.output
    assert f"unknown recipient user {missing_id}" in dry.output
    assert len(read_topic(broker.address, topic, expect=2)) == 2  # nothing sent

    # the fix: the recipient now exists
    django_user_model.objects.create_user(id=missing_id, username="late-doctor")
    replay = start_process("dlq_replay", name="replay")
    assert replay.proc.wait(30) == 0, replay.output
    assert "replayed 2 dead letter(s)" in replay.output
    assert "replaying [" in replay.output and "] 2/2" in replay.output

    applied = wait_until(
        lambda: Notification.objects.filter(event_id=event_id_of(fixable)).count() == 2
    )
    assert applied, consumer.output
    # the record that is still bad is dead-lettered again, with its original headers
    dead = read_topic(broker.address, dlq, expect=3)
    assert len(dead) == 3
    [again] = [headers_of(d) for d in dead if "dlq_replayed_from" in headers_of(d)]
    assert again["dlq_replayed_from"].startswith(f"{dlq}[")
    assert again["ce_id"] == event_id_of(hopeless)

    # a second replay sends only what was dead-lettered since the first
    second = start_process("dlq_replay", name="replay-again")
    assert second.proc.wait(30) == 0, second.output
    assert "replayed 1 dead letter(s)" in second.output
    assert len(read_topic(broker.address, dlq, expect=4)) == 4
    assert Notification.objects.filter(event_id=event_id_of(fixable)).count() == 2
    assert consumer.terminate() == 0
