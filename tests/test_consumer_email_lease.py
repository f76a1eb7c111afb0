"""The email sender's lease is a setting (EMAIL_LEASE_SECONDS, issue 11).

Found by the chaos suite: a sender killed mid-send held its claimed deliveries for a
hard-coded 5 minutes. The lease is now a bounded setting (default 300 s).
"""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from notifications.mailer import EmailSender
from notifications.models import EmailDelivery
from tests.email_support import (
    kill_sender_mid_round,
    pending_deliveries,
    resend_all,
    slow_sink_env,
)
from tests.test_settings import manage_check

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_lease_defaults_to_five_minutes(make_user):
    assert settings.EMAIL_LEASE_SECONDS == 300
    pending_deliveries(make_user, 1)
    before = timezone.now()
    [claimed] = EmailSender().claim()
    lease = claimed.next_attempt_at - before
    assert timedelta(seconds=299) < lease <= timedelta(seconds=301)


@pytest.mark.parametrize("value", ["0", "86401", "soon"])
def test_a_lease_out_of_bounds_stops_start_up_naming_the_variable(value):
    result = manage_check(EMAIL_LEASE_SECONDS=value)
    assert result.returncode != 0
    assert "EMAIL_LEASE_SECONDS" in result.stderr


def test_a_killed_senders_deliveries_go_again_after_the_configured_lease(
    make_user, start_process
):
    deliveries = pending_deliveries(make_user, 40)
    sink, env = slow_sink_env(20, EMAIL_LEASE_SECONDS="3")
    try:
        kill_sender_mid_round(start_process, sink, env)
        killed_at = timezone.now()
        claimed = EmailDelivery.objects.filter(status="pending", attempts=1)
        assert claimed.exists()  # the round in hand: claimed, maybe sent, not marked
        assert all(
            killed_at < d.next_attempt_at <= killed_at + timedelta(seconds=3)
            for d in claimed
        )

        # No hand on the rows: a new sender takes them once the 3 s lease ran out.
        resend_all(start_process, env)
    finally:
        sink.stop()
    assert sink.total >= len(deliveries)
