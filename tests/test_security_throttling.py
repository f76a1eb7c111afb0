"""Rate limits that hold: the real client address, a store every process shares."""

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from appointments.models import Appointment
from core.client_ip import client_ip
from core.throttling import RedisCounterStore, check_rate
from tests.appointment_factories import book_each_hour, next_weekday
from tests.conftest import PASSWORD
from tests.security_kit import manage, redis_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def wrong_login(client, username="nobody", **extra):
    return client.post(
        "/api/auth/token",
        {"username": username, "password": "not-the-password"},
        format="json",
        **extra,
    )


def test_a_new_x_forwarded_for_per_request_gets_no_fresh_allowance(settings):
    settings.AXES_FAILURE_LIMIT = 1000  # the throttle is under test, not the lockout
    client = APIClient()
    statuses = [
        wrong_login(client, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
        for n in range(25)
    ]
    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}


@pytest.mark.parametrize(
    "proxies, forwarded, expected",
    [
        (0, "203.0.113.7", "10.0.0.1"),  # no proxy: the header is the client's word
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # a forged entry on the left
        (2, "198.51.100.1, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        (1, "not-an-address", "10.0.0.1"),
        (1, "", "10.0.0.1"),
    ],
)
def test_client_address_comes_from_the_trusted_proxies_only(
    settings, proxies, forwarded, expected
):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded
    )
    assert client_ip(request) == expected


@pytest.mark.django_db(transaction=True)
def test_counts_are_shared_by_every_process():
    """Hits counted by another process (another gunicorn worker) count here too."""
    script = (
        "from core.throttling import check_rate\n"
        "for _ in range(3): print(check_rate('auth', '192.0.2.50', '4/minute')[0])"
    )
    result = manage("shell", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:] == ["True", "True", "True"]
    assert check_rate("auth", "192.0.2.50", "4/minute")[0] is True
    allowed, wait = check_rate("auth", "192.0.2.50", "4/minute")
    assert allowed is False and 0 < wait <= 60


def test_booking_changes_are_throttled_per_user(settings, doctor, patient_client):
    settings.BOOKING_THROTTLE_RATE = "2/minute"
    day = next_weekday()
    book_each_hour(patient_client, doctor, day, (9, 10))
    third = {"doctorId": doctor.id, "date": day.isoformat(), "timeSlot": "11:00"}
    response = patient_client.post("/api/appointments", third, format="json")
    assert response.status_code == 429
    assert response.headers["Retry-After"]
    assert Appointment.objects.count() == 2
    # reads are not counted
    assert patient_client.get("/api/appointments").status_code == 200
    [first] = Appointment.objects.filter(time_slot="09:00")
    cancel = patient_client.post(f"/api/appointments/{first.id}/cancel")
    assert cancel.status_code == 429


def test_admin_login_is_throttled(settings, make_user):
    settings.ADMIN_LOGIN_THROTTLE_RATE = "2/minute"
    settings.AXES_FAILURE_LIMIT = 1000
    client = APIClient()
    form = {"username": "nobody", "password": "wrong", "next": "/admin/"}
    statuses = [client.post("/admin/login/", form).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_failed_logins_lock_one_username_from_one_address(settings, make_user):
    settings.AXES_FAILURE_LIMIT = 3
    user = make_user("erin")
    attacker = APIClient(REMOTE_ADDR="198.51.100.9")
    # the third failure locks the pair
    statuses = [wrong_login(attacker, "erin").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    right = {"username": "erin", "password": PASSWORD}
    locked = attacker.post("/api/auth/token", right, format="json")
    assert locked.status_code == 429
    assert "access" not in locked.content.decode()
    # the owner, elsewhere, still logs in
    owner = APIClient(REMOTE_ADDR="192.0.2.20")
    assert owner.post("/api/auth/token", right, format="json").status_code == 200
    # and the admin login is locked for that pair too
    user.is_staff = True
    user.save()
    form = {"username": "erin", "password": PASSWORD, "next": "/admin/"}
    admin = attacker.post("/admin/login/", form, REMOTE_ADDR="198.51.100.9")
    assert admin.status_code == 429


def test_redis_store_counts_in_one_window(redis_url):  # noqa: F811
    store = RedisCounterStore(redis_url)
    key = "auth:test-redis-store"
    counts = [store.hit(key, 60)[0] for _ in range(3)]
    assert counts == [1, 2, 3]
    assert 0 < store.hit(key, 60)[1] <= 60


def test_cache_url_with_redis_moves_the_counters_there(settings, redis_url):  # noqa: F811
    settings.CACHE_URL = redis_url
    results = [check_rate("auth", "192.0.2.77", "2/minute")[0] for _ in range(3)]
    assert results == [True, True, False]
