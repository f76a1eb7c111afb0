"""The inbox transaction (apply_events) against the real database."""

import pytest

from notifications.handlers import InvalidEvent
from notifications.inbox import apply_events
from notifications.models import EmailDelivery, Notification, ProcessedEvent
from notifications.records import parse_record
from tests.consumer_kit import Record, event_id_of, event_record

pytestmark = pytest.mark.django_db


def parsed(records: list[dict]):
    return [parse_record(Record(r, offset)) for offset, r in enumerate(records)]


@pytest.fixture
def pair(make_user):
    return make_user(email="pat@example.com"), make_user(email="")


def test_a_batch_applied_twice_has_its_effect_once(pair):
    patient, doctor = pair
    records = [
        event_record(patient_id=patient.id, doctor_user_id=doctor.id) for _ in range(5)
    ]

    first = apply_events(parsed(records))
    assert (len(first.new), first.duplicates, first.rejected) == (5, 0, [])
    second = apply_events(parsed(records))
    assert (len(second.new), second.duplicates) == (0, 5)

    assert ProcessedEvent.objects.count() == 5
    assert Notification.objects.count() == 10
    # email only for the recipient who has an address
    assert (
        list(EmailDelivery.objects.values_list("notification__recipient", flat=True))
        == [patient.id] * 5
    )
    row = ProcessedEvent.objects.get(event_id=event_id_of(records[3]))
    assert (row.topic, row.partition, row.offset) == ("appointments", 0, 3)


def test_the_same_event_twice_in_one_batch_is_applied_once(pair):
    patient, doctor = pair
    record = event_record(patient_id=patient.id, doctor_user_id=doctor.id)
    applied = apply_events(parsed([record, record]))
    assert (len(applied.new), applied.duplicates) == (1, 1)
    assert Notification.objects.count() == 2


def test_an_event_for_an_unknown_recipient_is_rejected_and_the_rest_applied(pair):
    patient, doctor = pair
    good = event_record(patient_id=patient.id, doctor_user_id=doctor.id)
    bad = event_record(patient_id=patient.id, doctor_user_id=doctor.id + 1000)
    applied = apply_events(parsed([good, bad]))
    [(event, error)] = applied.rejected
    assert str(event.event_id) == event_id_of(bad)
    assert isinstance(error, InvalidEvent)
    assert str(error) == f"unknown recipient user {doctor.id + 1000}"
    assert [str(e.event_id) for e in applied.new] == [event_id_of(good)]
    assert not ProcessedEvent.objects.filter(event_id=event_id_of(bad)).exists()


def test_notifications_keep_the_order_of_the_batch(pair):
    patient, doctor = pair
    records = [
        event_record(patient_id=patient.id, doctor_user_id=doctor.id) for _ in range(30)
    ]
    apply_events(parsed(records))
    in_id_order = list(
        Notification.objects.order_by("id").values_list("event_id", "recipient_id")
    )
    expected = [
        (event_id_of(r), user.id) for r in records for user in (patient, doctor)
    ]
    assert [(str(e), u) for e, u in in_id_order] == expected


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_batch_commits_under_the_sessions_lock_timeout(pair):
    """As the consumer runs it (one statement, its own transaction): the lock
    timeout is set on the session once, and again on the connection that replaces
    a dropped one."""
    from django.db import connection

    patient, doctor = pair
    records = [
        event_record(patient_id=patient.id, doctor_user_id=doctor.id) for _ in range(3)
    ]
    assert (len(apply_events(parsed(records[:2])).new)) == 2
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone() == ("5s",)
    connection.close()
    assert (len(apply_events(parsed(records)).new)) == 1
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone() == ("5s",)
    assert ProcessedEvent.objects.count() == 3
    assert Notification.objects.count() == 6
