"""Pagination and filters on the appointment list; bad filters are 400s naming the field."""

from datetime import time

import pytest

from appointments.services import appointment_book
from tests.appointment_factories import make_doctor, next_weekday, past_appointment

pytestmark = pytest.mark.django_db


@pytest.fixture
def schedule(patient, doctor, make_user):
    other = make_doctor(make_user("dr-two"))
    first, second = next_weekday(7), next_weekday(14)
    rows = [
        appointment_book(patient=patient, doctor=doctor, date=first, time_slot=time(9)),
        appointment_book(
            patient=patient, doctor=doctor, date=second, time_slot=time(9)
        ),
        appointment_book(
            patient=patient, doctor=other, date=second, time_slot=time(11)
        ),
        past_appointment(patient=patient, doctor=doctor, status="completed"),
    ]
    return {
        "doctor": doctor,
        "other": other,
        "first": first,
        "second": second,
        "rows": rows,
    }


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [a["id"] for a in response.json()["results"]]


def test_filters_by_status_date_range_and_doctor(patient_client, schedule):
    booked_first, booked_second, with_other, done = (
        str(a.id) for a in schedule["rows"]
    )
    assert ids(patient_client.get("/api/appointments?status=completed")) == [done]
    assert ids(
        patient_client.get(f"/api/appointments?dateFrom={schedule['second']}")
    ) == [
        booked_second,
        with_other,
    ]
    assert ids(
        patient_client.get(
            f"/api/appointments?dateFrom={schedule['first']}&dateTo={schedule['first']}"
        )
    ) == [booked_first]
    assert ids(
        patient_client.get(f"/api/appointments?doctorId={schedule['other'].id}")
    ) == [with_other]
    assert ids(
        patient_client.get(
            f"/api/appointments?status=booked&doctorId={schedule['doctor'].id}"
        )
    ) == [booked_first, booked_second]


def test_pages_follow_page_size(patient_client, schedule):
    body = patient_client.get("/api/appointments?pageSize=3").json()
    assert body["count"] == 4 and len(body["results"]) == 3 and body["next"]
    second = patient_client.get("/api/appointments?pageSize=3&page=2").json()
    assert len(second["results"]) == 1 and second["next"] is None
    seen = [a["id"] for a in body["results"] + second["results"]]
    assert sorted(seen) == sorted(str(a.id) for a in schedule["rows"])


@pytest.mark.parametrize(
    "query, field",
    [
        ("status=lost", "status"),
        ("dateFrom=yesterday", "dateFrom"),
        ("dateTo=2024-13-01", "dateTo"),
        ("doctorId=abc", "doctorId"),
        ("doctorId=0", "doctorId"),
        ("dateFrom=2030-02-01&dateTo=2030-01-01", "dateTo"),
    ],
)
def test_bad_filter_answers_400_naming_it(patient_client, query, field):
    response = patient_client.get(f"/api/appointments?{query}")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]


def test_page_past_the_end_answers_404(patient_client, schedule):
    assert patient_client.get("/api/appointments?page=9").status_code == 404
