"""Security settings: each limit is a setting, malformed values stop start-up."""

import pytest

from tests.test_settings import manage_check


@pytest.mark.parametrize(
    "variable, value",
    [
        ("AUTH_THROTTLE_RATE", "lots"),
        ("BOOKING_THROTTLE_RATE", "30/fortnight"),
        ("ADMIN_LOGIN_THROTTLE_RATE", "0/minute"),
        ("TRUSTED_PROXY_COUNT", "-1"),
        ("CACHE_URL", "memcached://cache:11211"),
        ("MAX_ACTIVE_APPOINTMENTS_PER_PATIENT", "0"),
        ("MAX_REQUEST_BODY_BYTES", "10"),
        ("LOGIN_FAILURE_LIMIT", "0"),
        ("AUDIT_RETENTION", "forever"),
    ],
)
def test_malformed_security_setting_stops_start_up_naming_it(variable, value):
    result = manage_check(**{variable: value})
    assert result.returncode == 2
    assert variable in result.stderr


def test_implicit_tls_for_smtp_is_a_setting_and_excludes_starttls():
    result = manage_check(EMAIL_USE_SSL="1", EMAIL_USE_TLS="1")
    assert result.returncode == 2
    assert "EMAIL_USE_SSL" in result.stderr
    assert manage_check(EMAIL_USE_SSL="1").returncode == 0


def test_relay_and_consumer_metrics_bind_to_loopback_by_default(settings):
    assert settings.METRICS_BIND_ADDRESS == "127.0.0.1"
