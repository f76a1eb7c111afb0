"""Abuse limits: request body size, and a cap on a patient's upcoming appointments."""

import io
import json
from datetime import time

import pytest
from django.core.handlers.wsgi import WSGIRequest
from rest_framework.test import APIClient

from appointments.models import Appointment
from core.limits import RequestBodyLimitMiddleware, RequestBodyTooLarge
from tests.appointment_factories import book_each_hour, next_weekday

pytestmark = pytest.mark.django_db

ONE_MB = json.dumps({"username": "x" * (1024 * 1024), "password": "y"})


@pytest.mark.parametrize(
    "path",
    ["/api/auth/token", "/api/auth/register", "/api/appointments", "/admin/login/"],
)
def test_a_body_over_the_limit_answers_413(patient_client, path):
    response = patient_client.generic(
        "POST", path, ONE_MB, content_type="application/json"
    )
    assert response.status_code == 413
    assert "larger than 65536 bytes" in response.json()["detail"]


def test_a_body_under_the_limit_is_read(settings, client):
    settings.MAX_REQUEST_BODY_BYTES = 2048
    body = json.dumps({"username": "x" * 1500, "password": "y"})
    response = APIClient().generic(
        "POST", "/api/auth/token", body, content_type="application/json"
    )
    assert response.status_code == 400  # read and validated: the name is too long
    big = json.dumps({"username": "x" * 2100, "password": "y"})
    response = APIClient().generic(
        "POST", "/api/auth/token", big, content_type="application/json"
    )
    assert response.status_code == 413


class CountingStream(io.BytesIO):
    """A body stream that remembers how much was read from it."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.taken = 0

    def read(self, size=-1):
        data = super().read(size)
        self.taken += len(data)
        return data


def test_a_body_of_unknown_length_is_read_no_further_than_the_limit(settings):
    """A body with no Content-Length (chunked, through ASGI) stops at the limit."""
    settings.MAX_REQUEST_BODY_BYTES = 1024
    stream = CountingStream(b"x" * 100_000)
    request = WSGIRequest(
        {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "wsgi.input": stream}
    )
    request._stream = stream  # what an ASGI request holds: the raw body file

    def view(request):
        return request.body

    with pytest.raises(RequestBodyTooLarge) as caught:
        RequestBodyLimitMiddleware(view)(request)
    assert caught.value.status_code == 413
    assert stream.taken <= 1025


def test_a_declared_length_over_the_limit_is_refused_unread(settings):
    stream = CountingStream(b"x" * 100_000)
    request = WSGIRequest(
        {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/",
            "CONTENT_LENGTH": "100000",
            "wsgi.input": stream,
        }
    )
    response = RequestBodyLimitMiddleware(lambda r: r.body)(request)
    assert response.status_code == 413
    assert stream.taken == 0


def test_the_booking_after_the_limit_answers_409_naming_it(
    settings, doctor, patient, patient_client
):
    settings.MAX_ACTIVE_APPOINTMENTS_PER_PATIENT = 8
    day = next_weekday()
    book_each_hour(patient_client, doctor, day, range(9, 17))
    ninth = {"doctorId": doctor.id, "date": day.isoformat(), "timeSlot": "16:30"}
    response = patient_client.post("/api/appointments", ninth, format="json")
    assert response.status_code == 409
    assert "8 upcoming appointments" in response.json()["detail"]
    assert "MAX_ACTIVE_APPOINTMENTS_PER_PATIENT" in response.json()["detail"]
    assert response.json()["limit"] == 8
    assert Appointment.objects.filter(patient=patient).count() == 8
    # a cancelled one frees a place
    first = Appointment.objects.filter(patient=patient, time_slot=time(9)).get()
    assert (
        patient_client.post(f"/api/appointments/{first.id}/cancel").status_code == 200
    )
    assert (
        patient_client.post("/api/appointments", ninth, format="json").status_code
        == 201
    )
