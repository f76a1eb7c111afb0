"""Retention of notifications, inbox rows and email deliveries; the inbox outlives the topic."""

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from notifications.models import EmailDelivery, Notification, ProcessedEvent
from tests.test_settings import manage_check

pytestmark = pytest.mark.django_db


def aged(model, field: str, days: int, **values):
    row = model.objects.create(**values)
    model.objects.filter(pk=row.pk).update(**{field: timezone.now() - timedelta(days)})
    return row


def notification(patient, days: int) -> Notification:
    return aged(
        Notification,
        "created_at",
        days,
        recipient=patient,
        event_id=uuid.uuid4(),
        appointment_id=uuid.uuid4(),
        event_type="appointment.booked",
        message="Booked.",
    )


def inbox_row(days: int) -> ProcessedEvent:
    return aged(
        ProcessedEvent,
        "processed_at",
        days,
        event_id=uuid.uuid4(),
        event_type="appointment.booked",
        topic="appointments",
        partition=0,
        offset=1,
    )


def test_purge_deletes_each_kind_past_its_retention(patient):
    old_note, new_note = notification(patient, 400), notification(patient, 10)
    kept_note = notification(patient, 100)
    aged(EmailDelivery, "created_at", 100, notification=kept_note)
    aged(EmailDelivery, "created_at", 10, notification=new_note)
    old_inbox, new_inbox = inbox_row(31), inbox_row(29)
    out = StringIO()
    call_command("notifications_purge", stdout=out)
    assert "deleted 1 email deliveries" in out.getvalue()
    assert set(Notification.objects.all()) == {new_note, kept_note}
    assert list(EmailDelivery.objects.values_list("notification", flat=True)) == [
        new_note.pk
    ]
    assert list(ProcessedEvent.objects.all()) == [new_inbox]
    assert not Notification.objects.filter(pk=old_note.pk).exists()
    assert not ProcessedEvent.objects.filter(pk=old_inbox.pk).exists()


def test_inbox_retention_shorter_than_the_topic_is_refused():
    result = manage_check(INBOX_RETENTION="1d", KAFKA_TOPIC_RETENTION="7d")
    assert result.returncode == 2
    assert "INBOX_RETENTION must be at least KAFKA_TOPIC_RETENTION" in result.stderr


def test_inbox_rows_cannot_be_deleted_in_the_admin(client, make_user):
    row = inbox_row(1)
    client.force_login(make_user("boss", is_staff=True, is_superuser=True))
    page = f"/admin/notifications/processedevent/{row.pk}/delete/"
    assert client.post(page, {"post": "yes"}).status_code == 403
    assert ProcessedEvent.objects.filter(pk=row.pk).exists()


def test_email_delivery_status_is_read_only_in_the_admin(client, make_user, patient):
    delivery = EmailDelivery.objects.create(notification=notification(patient, 1))
    client.force_login(make_user("boss", is_staff=True, is_superuser=True))
    page = f"/admin/notifications/emaildelivery/{delivery.pk}/change/"
    before = EmailDelivery.objects.get(pk=delivery.pk).status
    client.post(page, {"status": "sent", "attempts": "0", "last_error": ""})
    assert EmailDelivery.objects.get(pk=delivery.pk).status == before
    assert 'name="status"' not in client.get(page).content.decode()
