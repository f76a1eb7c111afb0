"""JWT: rotation with a blacklist, logout, revocation on password change, key rotation."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from core import tokens
from tests.security_kit import bearer, token_pair
from tests.test_settings import manage_check

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


def refresh(client, token: str):
    return client.post("/api/auth/token/refresh", {"refresh": token}, format="json")


def test_logout_revokes_the_refresh_token(client, patient):
    pair = token_pair(patient)
    response = client.post(
        "/api/auth/logout", {"refresh": pair["refresh"]}, format="json"
    )
    assert response.status_code == 204
    again = refresh(client, pair["refresh"])
    assert again.status_code == 401
    assert again.json()["code"] == "token_not_valid"


def test_an_expired_access_token_answers_401_saying_so_in_the_detail(client, patient):
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(patient)
    token.set_exp(lifetime=-timedelta(seconds=1))
    response = client.get("/api/appointments", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "token_not_valid"
    assert "expired" in body["detail"], body
    assert set(body) == {"detail", "code"}, body


def test_logout_with_a_bad_token_answers_401(client):
    response = client.post("/api/auth/logout", {"refresh": "x"}, format="json")
    assert response.status_code == 401


def test_refresh_rotates_and_the_old_refresh_token_is_spent(client, patient):
    pair = token_pair(patient)
    first = refresh(client, pair["refresh"])
    assert first.status_code == 200
    assert set(first.json()) == {"access", "refresh"}
    assert first.json()["refresh"] != pair["refresh"]
    assert refresh(client, pair["refresh"]).status_code == 401
    assert refresh(client, first.json()["refresh"]).status_code == 200


def test_password_change_invalidates_earlier_tokens(client, patient):
    pair = token_pair(patient)
    assert bearer(pair["access"]).get("/api/appointments").status_code == 200
    patient.set_password("a-New-passw0rd-entirely")
    patient.save()
    assert bearer(pair["access"]).get("/api/appointments").status_code == 401
    assert refresh(client, pair["refresh"]).status_code == 401


@pytest.mark.parametrize("change", ["delete", "deactivate"])
def test_token_of_a_deleted_or_inactive_user_answers_401(client, make_user, change):
    user = make_user("frank")
    pair = token_pair(user)
    if change == "delete":
        get_user_model().objects.filter(pk=user.pk).delete()
    else:
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    assert refresh(client, pair["refresh"]).status_code == 401
    assert bearer(pair["access"]).get("/api/appointments").status_code == 401


def test_tokens_are_signed_with_their_own_key(settings):
    assert settings.SIMPLE_JWT["SIGNING_KEY"] == settings.JWT_SIGNING_KEY
    assert settings.JWT_SIGNING_KEY != settings.SECRET_KEY
    assert settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"] == timedelta(minutes=15)


def test_previous_signing_key_verifies_during_a_rotation(client, patient, settings):
    """A token signed with the previous key still works once the key is rotated."""
    pair = token_pair(patient)
    old_key = settings.JWT_SIGNING_KEY
    new_key = "a-brand-new-jwt-signing-key-of-at-least-fifty-characters!"
    backend = tokens.RotatingTokenBackend("HS256", new_key, previous_key=old_key)
    assert backend.decode(pair["access"])["user_id"] == str(patient.pk)
    without = tokens.RotatingTokenBackend("HS256", new_key)
    with pytest.raises(tokens.TokenBackendError):
        without.decode(pair["access"])
    assert backend.encode({"user_id": "1"}) == without.encode({"user_id": "1"})


@pytest.mark.parametrize(
    "variable, value",
    [
        ("JWT_ACCESS_MINUTES", "61"),
        ("JWT_ACCESS_MINUTES", "0"),
        ("JWT_REFRESH_DAYS", "31"),
    ],
)
def test_token_lifetimes_are_bounded(variable, value):
    result = manage_check(**{variable: value})
    assert result.returncode == 2
    assert variable in result.stderr
