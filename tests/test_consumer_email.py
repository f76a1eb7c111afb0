"""The email channel: a delivery per recipient with an address, retries, never in the way."""

import socket
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.mailer import EmailSender
from notifications.models import EmailDelivery, Notification
from tests.broker import free_port
from tests.conftest import wait_until
from tests.consumer_kit import (
    SmtpServer,
    event_id_of,
    event_record,
    produce,
    run_consumer,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_consumer_emails_each_recipient_with_an_address_through_the_backend(
    broker, topic, start_process, make_user
):
    patient = make_user(email="pat@example.com")
    doctor = make_user(email="")  # no address: in-app only
    record = event_record(patient_id=patient.id, doctor_user_id=doctor.id)
    produce(broker.address, topic, [record])
    consumer = run_consumer(
        start_process,
        env={"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"},
    )
    sent = wait_until(
        lambda: (
            EmailDelivery.objects.filter(status=EmailDelivery.Status.SENT).count() == 1
        ),
        timeout=30,
    )
    assert sent, consumer.output
    assert Notification.objects.filter(event_id=event_id_of(record)).count() == 2
    delivery = EmailDelivery.objects.get()
    assert delivery.notification.recipient == patient
    assert delivery.attempts == 1 and delivery.sent_at is not None
    assert "To: pat@example.com" in consumer.output
    assert "Subject: Appointment booked" in consumer.output
    assert consumer.terminate() == 0


@pytest.fixture
def pending_email(make_user):
    user = make_user(email="pat@example.com")
    note = Notification.objects.create(
        recipient=user,
        event_id="6f1c1d5e-3a3b-4f0e-9a54-3b8f0f3c2a11",
        appointment_id="0b7d4a8e-9f4e-4a55-8f1e-2a3c9b1d7e22",
        event_type="appointment.cancelled",
        message="Your appointment with Dr. Smith on 2030-05-06 at 10:00 was cancelled.",
    )
    return EmailDelivery.objects.create(notification=note)


def smtp_settings(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = (
        "127.0.0.1",
        port,
        5,
    )


def test_a_failed_email_is_retried_with_backoff_until_the_server_takes_it(
    settings, pending_email
):
    port = free_port()  # nothing listens there yet
    smtp_settings(settings, port)
    sender = EmailSender(retry_seconds=60, max_attempts=5)

    assert sender.send_due() == (1, 0)
    pending_email.refresh_from_db()
    assert pending_email.status == EmailDelivery.Status.PENDING
    assert pending_email.attempts == 1
    assert "ConnectionRefusedError" in pending_email.last_error
    wait = pending_email.next_attempt_at - timezone.now()
    assert timedelta(seconds=50) < wait <= timedelta(seconds=60)
    assert sender.send_due() == (0, 0)  # not due yet

    EmailDelivery.objects.update(next_attempt_at=timezone.now())  # the backoff ran out
    with SmtpServer(port) as server:
        assert sender.send_due() == (1, 1)
    pending_email.refresh_from_db()
    assert pending_email.status == EmailDelivery.Status.SENT
    assert pending_email.attempts == 2 and pending_email.last_error == ""
    [message] = server.messages
    assert message["to"] == ["pat@example.com"]
    assert b"Subject: Appointment cancelled" in message["data"]
    assert b"was cancelled" in message["data"]


def test_an_email_is_marked_failed_after_its_last_attempt(settings, pending_email):
    smtp_settings(settings, free_port())
    sender = EmailSender(retry_seconds=1, max_attempts=2)
    sender.send_due()
    EmailDelivery.objects.update(next_attempt_at=timezone.now())
    sender.send_due()
    pending_email.refresh_from_db()
    assert pending_email.status == EmailDelivery.Status.FAILED
    assert pending_email.attempts == 2
    EmailDelivery.objects.update(next_attempt_at=timezone.now())
    assert sender.send_due() == (0, 0)


def test_send_emails_is_the_email_channel_as_its_own_process(
    pending_email, start_process
):
    sender = start_process(
        "send_emails",
        env={"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"},
    )
    sent = wait_until(
        lambda: EmailDelivery.objects.filter(status=EmailDelivery.Status.SENT).exists()
    )
    assert sent, sender.output
    assert "To: pat@example.com" in sender.output
    assert sender.terminate() == 0
    assert "sent 1 emails" in sender.output


def test_a_mail_server_that_hangs_never_slows_the_kafka_loop(
    broker, topic, start_process, make_user
):
    patient, doctor = (
        make_user(email="pat@example.com"),
        make_user(email="doc@example.com"),
    )
    with socket.socket() as hanging:  # accepts connections, never says a word
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(16)
        consumer = run_consumer(
            start_process,
            env={
                "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "EMAIL_HOST": "127.0.0.1",
                "EMAIL_PORT": str(hanging.getsockname()[1]),
                "EMAIL_TIMEOUT": "120",
            },
        )
        first = [event_record(patient_id=patient.id, doctor_user_id=doctor.id)]
        produce(broker.address, topic, first)
        assert wait_until(lambda: Notification.objects.count() == 2, timeout=30), (
            consumer.output
        )
        time.sleep(0.3)  # the email thread is now stuck waiting for the greeting
        later = [
            event_record(patient_id=patient.id, doctor_user_id=doctor.id)
            for _ in range(20)
        ]
        produce(broker.address, topic, later)
        assert wait_until(lambda: Notification.objects.count() == 42, timeout=10), (
            consumer.output
        )
        assert not EmailDelivery.objects.filter(
            status=EmailDelivery.Status.SENT
        ).exists()
        assert EmailDelivery.objects.count() == 42
        assert consumer.terminate(timeout=10) == 0


def test_a_delivery_whose_notification_is_gone_is_given_up_not_retried(
    settings, pending_email
):
    """Deliveries have no foreign key (the consumer's batch would pay for it): a row
    left behind by a deletion outside Django fails once, with the reason, instead of
    being claimed again after every lease."""
    from django.db import connection

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {Notification._meta.db_table} WHERE id = %s",
            [pending_email.notification_id],
        )
    assert EmailSender().send_due() == (1, 0)
    delivery = EmailDelivery.objects.get(pk=pending_email.pk)
    assert delivery.status == EmailDelivery.Status.FAILED
    assert delivery.attempts == 1
    assert "no longer exists" in delivery.last_error
    EmailDelivery.objects.update(next_attempt_at=timezone.now())
    assert EmailSender().send_due() == (0, 0)


def test_a_round_sends_each_claimed_delivery_to_its_own_recipient(settings, make_user):
    from django.core import mail

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    people = [make_user(email=f"p{i}@example.com") for i in range(3)]
    for i, person in enumerate(people):
        note = Notification.objects.create(
            recipient=person,
            event_id=f"6f1c1d5e-3a3b-4f0e-9a54-3b8f0f3c2a1{i}",
            appointment_id="0b7d4a8e-9f4e-4a55-8f1e-2a3c9b1d7e22",
            event_type="appointment.booked",
            message=f"message {i}",
        )
        EmailDelivery.objects.create(notification=note)
    assert EmailSender(batch_size=2).send_due() == (2, 2)
    assert EmailSender(batch_size=2).send_due() == (1, 1)
    got = sorted((m.to[0], m.body, m.subject) for m in mail.outbox)
    assert got == [
        (f"p{i}@example.com", f"message {i}", "Appointment booked") for i in range(3)
    ]
    assert set(EmailDelivery.objects.values_list("status", "attempts")) == {
        (EmailDelivery.Status.SENT, 1)
    }
