"""Patient self-registration and the rate limit on the auth endpoints."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

NEW = {
    "username": "carol",
    "password": "Tulip-Harbour-42",
    "email": "carol@example.org",
    "firstName": "Carol",
}


def test_patient_registers_then_logs_in_and_books_nothing_yet():
    client = APIClient()
    response = client.post("/api/auth/register", NEW, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body == {
        "id": body["id"],
        "username": "carol",
        "email": "carol@example.org",
        "firstName": "Carol",
        "lastName": "",
    }
    user = get_user_model().objects.get(username="carol")
    assert not user.is_staff and user.check_password(NEW["password"])

    token = client.post(
        "/api/auth/token",
        {"username": "carol", "password": NEW["password"]},
        format="json",
    )
    assert token.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.json()['access']}")
    assert client.get("/api/appointments").json()["count"] == 0


@pytest.mark.parametrize(
    "password, message",
    [
        ("short1", "This password is too short."),
        ("password123", "This password is too common."),
        ("8234567890123", "This password is entirely numeric."),
        ("carol123", "The password is too similar to the username."),
    ],
)
def test_django_password_validators_apply(password, message):
    response = APIClient().post(
        "/api/auth/register", NEW | {"password": password}, format="json"
    )
    assert response.status_code == 400
    assert any(m.startswith(message) for m in response.json()["errors"]["password"])
    assert not get_user_model().objects.filter(username="carol").exists()


def test_taken_username_answers_400_in_any_case(make_user):
    make_user("Carol")
    response = APIClient().post("/api/auth/register", NEW, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"username": ["This username is taken."]}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": None}, "email"),
        ({"username": "has space"}, "username"),
        ({"username": "x" * 151}, "username"),
        ({"password": ""}, "password"),
    ],
)
def test_bad_registration_names_the_field(change, field):
    response = APIClient().post("/api/auth/register", NEW | change, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_registration_needs_username_password_and_email():
    response = APIClient().post("/api/auth/register", {}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"username", "password", "email"}


def test_auth_endpoints_are_throttled(settings, make_user):
    settings.AUTH_THROTTLE_RATE = "3/minute"
    make_user("dave")
    client = APIClient()
    wrong = {"username": "dave", "password": "wrong-password"}
    statuses = [
        client.post("/api/auth/token", wrong, format="json").status_code
        for _ in range(3)
    ]
    assert statuses == [401, 401, 401]
    response = client.post("/api/auth/token", wrong, format="json")
    assert response.status_code == 429
    assert response.headers["Retry-After"]
    assert "throttled" in response.json()["detail"].lower()
    # the limit is per client address and covers registration too
    assert client.post("/api/auth/register", NEW, format="json").status_code == 429
    other = APIClient(REMOTE_ADDR="10.0.0.9")
    assert other.post("/api/auth/register", NEW, format="json").status_code == 201


def test_other_endpoints_are_not_auth_throttled(settings, patient_client):
    settings.AUTH_THROTTLE_RATE = "1/minute"
    assert all(patient_client.get("/api/doctors").status_code == 200 for _ in range(5))
