"""Booking races over real HTTP: concurrent requests, each on its own database connection."""

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import time

import pytest
from rest_framework_simplejwt.tokens import RefreshToken

from appointments.models import Appointment
from appointments.rules import PATIENT_BUSY, SLOT_TAKEN
from relay.models import OutboxEvent
from tests.appointment_factories import make_doctor, next_weekday

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def token(user) -> str:
    return str(RefreshToken.for_user(user).access_token)


def post_all_at_once(
    url: str, requests: list[tuple[str, dict]]
) -> list[tuple[int, dict]]:
    """POST every (token, body) from its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(requests))

    def post(item):
        bearer, body = item
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {bearer}",
            },
            method="POST",
        )
        barrier.wait()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(post, requests))


def test_twenty_concurrent_requests_for_one_slot_give_one_201_and_409s(
    live_server, doctor, make_user
):
    day = next_weekday()
    body = {"doctorId": doctor.id, "date": day.isoformat(), "timeSlot": "10:00"}
    patients = [make_user(f"racer-{n}") for n in range(20)]

    results = post_all_at_once(
        f"{live_server.url}/api/appointments", [(token(p), body) for p in patients]
    )

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 19, results
    assert all(b["detail"] == SLOT_TAKEN for status, b in results if status == 409)
    [winner] = Appointment.objects.filter(doctor=doctor, date=day, time_slot=time(10))
    assert winner.status == "booked"
    assert [e.aggregateid for e in OutboxEvent.objects.all()] == [str(winner.id)]


def test_concurrent_requests_of_one_patient_for_one_time_give_one_appointment(
    live_server, patient, make_user
):
    day = next_weekday()
    doctors = [make_doctor(make_user(f"dr-{n}"), name=f"Dr. {n}") for n in range(10)]
    bearer = token(patient)
    requests = [
        (bearer, {"doctorId": d.id, "date": day.isoformat(), "timeSlot": "11:00"})
        for d in doctors
    ]

    results = post_all_at_once(f"{live_server.url}/api/appointments", requests)

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 9, results
    assert all(b["detail"] == PATIENT_BUSY for status, b in results if status == 409)
    assert Appointment.objects.filter(patient=patient).count() == 1
    assert OutboxEvent.objects.count() == 1
