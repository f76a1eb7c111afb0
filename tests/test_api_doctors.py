"""Doctors and their free slots over the API."""

from datetime import time, timedelta

import pytest
from django.utils import timezone

from appointments.services import appointment_book
from tests.appointment_factories import make_doctor, next_weekday, next_weekend_day

pytestmark = pytest.mark.django_db


def test_doctors_list_shows_hours_and_filters_by_specialty(
    patient_client, doctor, make_user
):
    make_doctor(
        make_user(),
        name="Dr. Heart",
        specialty="Cardiology",
        slot_minutes=20,
        days=[0, 2],
        start=time(13),
        end=time(17),
    )
    body = patient_client.get("/api/doctors").json()
    assert body["count"] == 2
    assert [d["name"] for d in body["results"]] == ["Dr. Heart", "Dr. Smith"]

    body = patient_client.get("/api/doctors?specialty=cardiology").json()
    [heart] = body["results"]
    assert heart["specialty"] == "Cardiology" and heart["slotMinutes"] == 20
    assert heart["workingHours"] == [
        {"weekday": 0, "weekdayName": "Monday", "start": "13:00", "end": "17:00"},
        {"weekday": 2, "weekdayName": "Wednesday", "start": "13:00", "end": "17:00"},
    ]
    assert patient_client.get("/api/doctors?specialty=Dermatology").json()["count"] == 0


def test_doctor_detail_and_unknown_doctor(patient_client, doctor):
    assert patient_client.get(f"/api/doctors/{doctor.id}").json()["name"] == "Dr. Smith"
    response = patient_client.get("/api/doctors/999999")
    assert response.status_code == 404


def test_slots_are_the_free_ones_of_the_day(patient_client, patient, doctor):
    day = next_weekday()
    appointment_book(patient=patient, doctor=doctor, date=day, time_slot=time(9, 30))
    response = patient_client.get(
        f"/api/doctors/{doctor.id}/slots?date={day.isoformat()}"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["doctorId"] == doctor.id and body["date"] == day.isoformat()
    assert body["slotMinutes"] == 30
    assert body["slots"][:3] == ["09:00", "10:00", "10:30"]
    assert body["slots"][-1] == "16:30" and len(body["slots"]) == 15


def test_cancelled_appointment_frees_its_slot_in_the_list(
    patient_client, patient, doctor
):
    day = next_weekday()
    appointment = appointment_book(
        patient=patient, doctor=doctor, date=day, time_slot=time(9)
    )
    patient_client.post(f"/api/appointments/{appointment.id}/cancel")
    slots = patient_client.get(f"/api/doctors/{doctor.id}/slots?date={day}").json()[
        "slots"
    ]
    assert slots[0] == "09:00"


def test_no_slots_on_days_off_or_in_the_past(patient_client, doctor):
    for day in (next_weekend_day(), timezone.localdate() - timedelta(days=3)):
        body = patient_client.get(f"/api/doctors/{doctor.id}/slots?date={day}").json()
        assert body["slots"] == []


def test_slots_today_leave_out_those_already_started(patient_client, make_user):
    every_day = make_doctor(make_user(), days=range(7), start=time(0), end=time(23, 30))
    now = timezone.localtime()
    slots = patient_client.get(
        f"/api/doctors/{every_day.id}/slots?date={now.date()}"
    ).json()["slots"]
    assert "00:00" not in slots
    assert all(s > now.strftime("%H:%M") for s in slots)


@pytest.mark.parametrize("query", ["", "?date=tomorrow", "?date=2025-02-30"])
def test_slots_need_a_valid_date(patient_client, doctor, query):
    response = patient_client.get(f"/api/doctors/{doctor.id}/slots{query}")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["date"]


def test_slots_of_unknown_doctor_answer_404(patient_client):
    assert (
        patient_client.get(
            f"/api/doctors/424242/slots?date={next_weekday()}"
        ).status_code
        == 404
    )
