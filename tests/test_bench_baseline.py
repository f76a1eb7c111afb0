"""bench/api.py's baseline without events is a bench-only settings module.

Booked through bench.settings_baseline (in a process of its own, as the bench's
gunicorn is), an appointment writes no outbox row; booked through the project's
settings it writes its event. No setting a deployment can give switches it.
"""

import json
import subprocess
import sys

import pytest

from appointments.models import Appointment
from relay.models import OutboxEvent
from tests.conftest import PASSWORD, ROOT
from tests.test_flow import next_weekday, seed_request

pytestmark = pytest.mark.django_db(transaction=True)

BOOK = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings_baseline"
import django
django.setup()
from django.test import Client
from django.conf import settings
from django.test.utils import setup_test_environment
setup_test_environment()
# the tests hash passwords with MD5
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
username, password, body = sys.argv[1], sys.argv[2], sys.argv[3]
client = Client()
token = client.post(
    "/api/auth/token", {"username": username, "password": password},
    content_type="application/json",
).json()["access"]
response = client.post(
    "/api/appointments", json.loads(body), content_type="application/json",
    HTTP_AUTHORIZATION="Bearer " + token,
)
print(response.status_code)
"""


def test_baseline_settings_book_without_an_outbox_row(
    proc_env, patient, doctor, patient_client
):
    day = next_weekday()
    body = json.dumps(seed_request(doctor, day, "09:00"))
    env = {**proc_env, "OUTBOX_BENCH_DISABLE": "1"}  # no longer read by anything
    baseline = subprocess.run(
        [sys.executable, "-c", BOOK, patient.username, PASSWORD, body],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert baseline.stdout.strip() == "201", baseline.stderr
    assert Appointment.objects.count() == 1
    assert OutboxEvent.objects.count() == 0

    response = patient_client.post(
        "/api/appointments", seed_request(doctor, day, "10:00"), format="json"
    )
    assert response.status_code == 201, response.content
    assert Appointment.objects.count() == 2
    assert OutboxEvent.objects.count() == 1
