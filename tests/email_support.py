"""Email-channel test plumbing: pending deliveries, an SMTP sink, a sender killed mid-round."""

import signal
import uuid

from devtools.chaos.smtp import SmtpSink
from notifications.models import EmailDelivery, Notification
from tests.conftest import wait_until


def pending_deliveries(make_user, n: int) -> list[EmailDelivery]:
    """n pending email deliveries, spread over four recipients."""
    users = [make_user(email=f"person-{i}@example.org") for i in range(4)]
    deliveries = []
    for i in range(n):
        note = Notification.objects.create(
            recipient=users[i % 4],
            event_id=uuid.uuid4(),
            appointment_id=uuid.uuid4(),
            event_type="appointment.booked",
            message=f"Your appointment number {i} is booked.",
        )
        deliveries.append(EmailDelivery.objects.create(notification=note))
    return deliveries


def slow_sink_env(batch_size: int, **extra: str) -> tuple[SmtpSink, dict]:
    """A started sink taking one message per 50 ms (a round lasts seconds) and the
    environment that points ``send_emails`` at it."""
    sink = SmtpSink(delay=0.05).start()
    env = {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(sink.port),
        "NOTIFICATION_EMAIL_BATCH_SIZE": str(batch_size),
        **extra,
    }
    return sink, env


def kill_sender_mid_round(start_process, sink: SmtpSink, env: dict) -> None:
    """Start ``send_emails``, SIGKILL it once a few messages reached the sink."""
    sender = start_process("send_emails", env=env)
    assert wait_until(lambda: sink.total >= 3, timeout=30), sender.output
    assert sink.sending()
    sender.proc.send_signal(signal.SIGKILL)
    sender.proc.wait(10)


def resend_all(start_process, env: dict) -> None:
    """A new sender sends every delivery left, then stops cleanly."""
    again = start_process("send_emails", env=env, name="send_emails-again")
    done = wait_until(
        lambda: not EmailDelivery.objects.exclude(status="sent").exists(),
        timeout=60,
    )
    assert done, again.output
    assert again.terminate() == 0
