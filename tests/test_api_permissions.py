"""Roles: patients see their own, doctors their schedule, staff all; others' ids answer 404."""

from datetime import time

import pytest
from rest_framework.test import APIClient

from appointments.services import appointment_book
from relay.models import OutboxEvent
from tests.appointment_factories import (
    booking,
    make_doctor,
    next_weekday,
    past_appointment,
)
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def others(other_patient, make_user):
    """An appointment of another patient with another doctor."""
    other_doctor = make_doctor(make_user("dr-other"))
    return appointment_book(
        patient=other_patient,
        doctor=other_doctor,
        date=next_weekday(),
        time_slot=time(10),
    )


@pytest.fixture
def mine(patient, doctor):
    return appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(11)
    )


@pytest.mark.parametrize(
    "method, suffix",
    [
        ("get", ""),
        ("post", "/cancel"),
        ("post", "/reschedule"),
        ("post", "/complete"),
        ("post", "/no-show"),
    ],
)
def test_another_patients_appointment_answers_404(
    patient_client, others, method, suffix
):
    body = {"date": next_weekday(days_ahead=20).isoformat(), "timeSlot": "09:00"}
    response = getattr(patient_client, method)(
        f"/api/appointments/{others.id}{suffix}", body, format="json"
    )
    assert response.status_code == 404, response.content
    assert response.json() == {"detail": "No appointment with this id."}
    others.refresh_from_db()
    assert (others.status, others.time_slot) == ("booked", time(10))
    assert OutboxEvent.objects.filter(aggregateid=str(others.id)).count() == 1


def test_unknown_and_others_ids_look_the_same(patient_client, others):
    unknown = patient_client.get(
        "/api/appointments/00000000-0000-0000-0000-000000000000"
    )
    theirs = patient_client.get(f"/api/appointments/{others.id}")
    assert (unknown.status_code, unknown.json()) == (theirs.status_code, theirs.json())


def test_patient_lists_only_own_appointments(patient_client, mine, others):
    ids = [a["id"] for a in patient_client.get("/api/appointments").json()["results"]]
    assert ids == [str(mine.id)]


def test_doctor_sees_own_schedule_only(doctor_client, mine, others):
    ids = [a["id"] for a in doctor_client.get("/api/appointments").json()["results"]]
    assert ids == [str(mine.id)]
    assert doctor_client.get(f"/api/appointments/{others.id}").status_code == 404


def test_staff_see_all(staff_client, mine, others):
    ids = {a["id"] for a in staff_client.get("/api/appointments").json()["results"]}
    assert ids == {str(mine.id), str(others.id)}


def test_patient_cannot_complete_or_mark_no_show_own_appointment(
    patient_client, patient, doctor
):
    started = past_appointment(patient=patient, doctor=doctor)
    for action in ("complete", "no-show"):
        response = patient_client.post(f"/api/appointments/{started.id}/{action}")
        assert response.status_code == 403, response.content
        assert "Only the doctor or clinic staff" in response.json()["detail"]
    started.refresh_from_db()
    assert started.status == "booked"


def test_doctor_cannot_complete_another_doctors_appointment(
    doctor_client, other_patient, make_user
):
    theirs = past_appointment(
        patient=other_patient, doctor=make_doctor(make_user("dr-x"))
    )
    assert (
        doctor_client.post(f"/api/appointments/{theirs.id}/complete").status_code == 404
    )


def test_doctor_and_staff_may_cancel(doctor_client, staff_client, patient, doctor):
    first = appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9)
    )
    second = appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9, 30)
    )
    assert doctor_client.post(f"/api/appointments/{first.id}/cancel").status_code == 200
    assert staff_client.post(f"/api/appointments/{second.id}/cancel").status_code == 200
    by = [
        e.payload["cancelledBy"]
        for e in OutboxEvent.objects.filter(type="appointment.cancelled").order_by(
            "seq"
        )
    ]
    assert by == ["doctor", "staff"]


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/appointments"),
        ("post", "/api/appointments"),
        ("get", "/api/doctors"),
        ("get", "/api/notifications"),
        ("get", "/api/notifications/unread-count"),
        ("post", "/api/appointments/00000000-0000-0000-0000-000000000000/cancel"),
    ],
)
def test_no_token_answers_401(method, path):
    response = getattr(APIClient(), method)(path, {}, format="json")
    assert response.status_code == 401
    assert response.json()["detail"]


def test_bad_token_answers_401():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert client.get("/api/appointments").status_code == 401


def test_doctor_who_is_also_a_patient_sees_both(doctor, make_user):
    """A doctor booking with a colleague sees that appointment next to their schedule."""
    colleague = make_doctor(make_user("dr-colleague"))
    own = appointment_book(
        patient=doctor.user, doctor=colleague, date=next_weekday(), time_slot=time(9)
    )
    client = client_for(doctor.user)
    assert [a["id"] for a in client.get("/api/appointments").json()["results"]] == [
        str(own.id)
    ]


def test_unknown_api_url_answers_json_404(patient_client):
    response = patient_client.get("/api/appointments/not-a-uuid")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_patient_books_for_themselves_only(patient_client, patient, doctor):
    response = patient_client.post(
        "/api/appointments",
        booking(doctor, next_weekday(), patientId=999),
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["patientId"] == patient.id
