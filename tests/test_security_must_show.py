"""Issue 12's "must show", end to end: a real gunicorn, relay and broker, demo data."""

import json
import re
import urllib.error
import urllib.request
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from core.tokens import RefreshToken
from tests.kafka_utils import read_topic
from tests.web_support import gunicorn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


class Http:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method, path, body=None, *, token=None, headers=None, raw=None):
        data = raw if raw is not None else None if body is None else json.dumps(body)
        request = urllib.request.Request(
            self.base + path,
            data=data.encode() if isinstance(data, str) else data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@pytest.fixture
def web(proc_env, tmp_path):
    with gunicorn(proc_env, tmp_path / "gunicorn.log") as port:
        yield Http(port)


def next_weekdays(n: int) -> list[str]:
    days, day = [], timezone.localdate() + timedelta(days=1)
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def test_must_show(web, topic, broker, start_process, settings):
    """Each point of the issue's list, against real processes."""
    settings.DEMO_MODE = True
    call_command("seed_demo", stdout=StringIO())
    alice = get_user_model().objects.get(username="alice")

    # alice's tokens (the web server verifies them with the same JWT_SIGNING_KEY,
    # from the same environment)
    refresh = RefreshToken.for_user(alice)
    pair = {"access": str(refresh.access_token), "refresh": str(refresh)}

    # her ninth active booking answers 409 naming the limit
    status, body = web.call("GET", "/api/doctors", token=pair["access"])
    doctor_id = json.loads(body)["results"][0]["id"]
    booked = []
    for day in next_weekdays(9):
        status, body = web.call(
            "POST",
            "/api/appointments",
            {"doctorId": doctor_id, "date": day, "timeSlot": "10:00", "reason": "Rash"},
            token=pair["access"],
        )
        booked.append((status, body))
    assert [s for s, _ in booked[:8]] == [201] * 8, booked
    last_status, last_body = booked[-1]
    assert last_status == 409, last_body
    assert "MAX_ACTIVE_APPOINTMENTS_PER_PATIENT" in last_body

    # she views one: the view and the booking are in the audit trail with her id
    first_id = json.loads(next(b for s, b in booked if s == 201))["id"]
    assert (
        web.call("GET", f"/api/appointments/{first_id}", token=pair["access"])[0] == 200
    )
    out = StringIO()
    call_command("audit_log", "--appointment", first_id, stdout=out)
    rows = [line.split() for line in out.getvalue().splitlines()[1:-1]]
    assert [(r[2], r[3]) for r in rows] == [
        ("booked", str(alice.pk)),
        ("viewed", str(alice.pk)),
    ]

    # a new record on the topic has no reason
    relay = start_process("run_relay")
    records = read_topic(broker.address, topic, expect=1)
    assert records, relay.output
    assert "reason" not in json.loads(records[0].value())
    relay.terminate()

    # logout, then refresh: 401
    assert web.call("POST", "/api/auth/logout", {"refresh": pair["refresh"]})[0] == 204
    assert (
        web.call("POST", "/api/auth/token/refresh", {"refresh": pair["refresh"]})[0]
        == 401
    )

    # a 1 MB body: 413
    status, _ = web.call(
        "POST", "/api/appointments", raw="x" * 1_000_000, token=pair["access"]
    )
    assert status == 413

    # /api/docs/ references no script or style outside the site
    status, html = web.call("GET", "/api/docs/")
    assert status == 200
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)

    # 25 wrong passwords from one address, each with a new X-Forwarded-For: a 429
    statuses = [
        web.call(
            "POST",
            "/api/auth/token",
            {"username": f"guess-{n}", "password": "wrong"},
            headers={"X-Forwarded-For": f"198.51.100.{n}"},
        )[0]
        for n in range(25)
    ]
    assert 429 in statuses and statuses[0] == 401
