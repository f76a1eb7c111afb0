"""seed_demo as a real command: the demo doctor's week, idempotent, DEMO_MODE only."""

import os
import subprocess
import sys
from datetime import time

import pytest

from appointments.models import Doctor
from tests.appointment_factories import next_weekday
from tests.conftest import ROOT, client_for, database_url

pytestmark = pytest.mark.django_db(transaction=True)


def seed_demo(**env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "seed_demo"],
        cwd=ROOT,
        env=os.environ | {"DATABASE_URL": database_url()} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_seed_demo_gives_dr_smith_weekdays_9_to_17_and_runs_twice():
    first = seed_demo(DEMO_MODE="1")
    assert first.returncode == 0, first.stderr
    assert "Monday-Friday 09:00-17:00" in first.stdout
    second = seed_demo(DEMO_MODE="1")
    assert second.returncode == 0, second.stderr
    assert "exists" in second.stdout

    smith = Doctor.objects.get(name="Dr. Smith")
    assert smith.slot_minutes == 30
    assert [
        (h.weekday, h.start, h.end) for h in smith.working_hours.order_by("weekday")
    ] == [(day, time(9), time(17)) for day in range(5)]

    # the seed's own request, verbatim, books with the seeded doctor as the demo patient
    from django.contrib.auth import get_user_model

    alice = get_user_model().objects.get(username="alice")
    alice.set_password("a-Long-test-passw0rd")
    alice.save()
    response = client_for(alice).post(
        "/api/appointments",
        {
            "doctorId": str(smith.id),
            "doctorName": "Dr. Smith",
            "date": next_weekday().isoformat(),
            "timeSlot": "10:00 AM",
            "reason": "Check-up",
        },
        format="json",
    )
    assert response.status_code == 201, response.content


def test_seed_demo_refuses_without_demo_mode():
    result = seed_demo(DEMO_MODE="0")
    assert result.returncode != 0
    assert "DEMO_MODE=1" in result.stderr
    assert not Doctor.objects.exists()
