"""The API's basic contract: auth, camelCase, trailing slashes, clear 400s, own data only."""

import pytest
from rest_framework.test import APIClient

from appointments.models import Appointment
from tests.conftest import client_for
from tests.test_flow import next_weekday, seed_request

pytestmark = pytest.mark.django_db


def test_token_pair_and_refresh(patient):
    client = APIClient()
    response = client.post(
        "/api/auth/token/",
        {"username": "alice", "password": "a-Long-test-passw0rd"},
        format="json",
    )
    assert response.status_code == 200
    refreshed = client.post(
        "/api/auth/token/refresh",
        {"refresh": response.json()["refresh"]},
        format="json",
    )
    assert refreshed.status_code == 200
    assert "access" in refreshed.json()


def test_requests_without_token_answer_401():
    client = APIClient()
    for path in ("/api/appointments", "/api/notifications", "/api/doctors"):
        assert client.get(path).status_code == 401


@pytest.mark.parametrize("path", ["/api/doctors", "/api/doctors/"])
def test_doctors_list_with_and_without_trailing_slash(patient_client, doctor, path):
    response = patient_client.get(path)
    assert response.status_code == 200
    [entry] = response.json()["results"]
    assert {k: entry[k] for k in ("id", "name", "specialty")} == {
        "id": doctor.id,
        "name": "Dr. Smith",
        "specialty": "General practice",
    }


@pytest.mark.parametrize("time_slot", ["10:00 AM", "10:00"])
def test_seed_request_books_with_both_time_formats(patient_client, doctor, time_slot):
    response = patient_client.post(
        "/api/appointments/",
        seed_request(doctor, next_weekday(), time_slot),
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["timeSlot"] == "10:00"
    assert body["doctorName"] == "Dr. Smith"
    assert Appointment.objects.filter(id=body["id"]).exists()


@pytest.mark.parametrize(
    "change, field",
    [
        ({"doctorId": "999999"}, "doctorId"),
        ({"doctorId": "abc"}, "doctorId"),
        ({"date": "15/12/2026"}, "date"),
        ({"date": "2026-02-30"}, "date"),
        ({"timeSlot": "25:00"}, "timeSlot"),
        ({"timeSlot": 1000}, "timeSlot"),
        ({"date": None}, "date"),
    ],
)
def test_bad_booking_input_answers_400_naming_the_field(
    patient_client, doctor, change, field
):
    body = seed_request(doctor, next_weekday()) | change
    response = patient_client.post("/api/appointments", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert Appointment.objects.count() == 0


@pytest.mark.parametrize("missing", ["doctorId", "date", "timeSlot"])
def test_missing_field_answers_400_naming_it(patient_client, doctor, missing):
    body = seed_request(doctor, next_weekday())
    del body[missing]
    response = patient_client.post("/api/appointments", body, format="json")
    assert response.status_code == 400
    assert missing in response.json()["errors"]


def test_malformed_json_answers_400(patient_client):
    response = patient_client.post(
        "/api/appointments", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert "detail" in response.json()


def test_patient_sees_only_their_own_appointments(patient_client, doctor, make_user):
    mine = patient_client.post(
        "/api/appointments", seed_request(doctor, next_weekday()), format="json"
    ).json()
    other = client_for(make_user("bob"))
    theirs = other.post(
        "/api/appointments",
        seed_request(doctor, next_weekday(8), "11:00"),
        format="json",
    ).json()

    listed = [
        a["id"] for a in patient_client.get("/api/appointments").json()["results"]
    ]
    assert listed == [mine["id"]]
    assert patient_client.get(f"/api/appointments/{mine['id']}").status_code == 200
    assert patient_client.get(f"/api/appointments/{theirs['id']}/").status_code == 404


@pytest.mark.parametrize("debug", [False, True], ids=["production", "make-run-debug"])
@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/appointments/not-a-uuid"),
        ("post", "/api/notifications/abc/read"),
        ("get", "/api/foo"),
        ("delete", "/api/doctors/1/nothing-here"),
        ("get", "/api"),
        ("get", "/api/"),
    ],
)
def test_unknown_api_paths_answer_a_json_404_with_debug_on_or_off(
    patient_client, settings, debug, method, path
):
    settings.DEBUG = debug
    response = getattr(patient_client, method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}
