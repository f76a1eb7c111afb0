"""The notifications API: the caller's own, unread filter, mark read, unread count."""

import uuid

import pytest

from notifications.models import Notification

pytestmark = pytest.mark.django_db


def notify(
    user, message="Your appointment is booked.", event_type="appointment.booked"
):
    return Notification.objects.create(
        recipient=user,
        event_id=uuid.uuid4(),
        appointment_id=uuid.uuid4(),
        event_type=event_type,
        message=message,
    )


@pytest.fixture
def inbox(patient, other_patient):
    first = notify(patient, "first")
    second = notify(patient, "second", "appointment.cancelled")
    theirs = notify(other_patient, "not yours")
    return first, second, theirs


def messages(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [n["message"] for n in response.json()["results"]]


def test_list_shows_own_notifications_newest_first(patient_client, inbox):
    response = patient_client.get("/api/notifications")
    assert messages(response) == ["second", "first"]
    note = response.json()["results"][0]
    assert note["eventType"] == "appointment.cancelled"
    assert (note["read"], note["readAt"]) == (False, None)


def test_mark_read_then_unread_filter_and_count(patient_client, inbox):
    first, second, _ = inbox
    assert patient_client.get("/api/notifications/unread-count").json() == {"unread": 2}

    response = patient_client.post(f"/api/notifications/{first.id}/read")
    assert response.status_code == 200, response.content
    assert response.json()["read"] is True and response.json()["readAt"]
    read_at = response.json()["readAt"]

    assert messages(patient_client.get("/api/notifications?unread=true")) == ["second"]
    assert messages(patient_client.get("/api/notifications?unread=false")) == ["first"]
    assert patient_client.get("/api/notifications/unread-count").json() == {"unread": 1}

    again = patient_client.post(f"/api/notifications/{first.id}/read")
    assert again.json()["readAt"] == read_at, "marking twice keeps the first time"


def test_another_users_notification_answers_404(patient_client, inbox):
    theirs = inbox[2]
    response = patient_client.post(f"/api/notifications/{theirs.id}/read")
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.read_at is None


def test_bad_unread_value_answers_400(patient_client):
    response = patient_client.get("/api/notifications?unread=maybe")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["unread"]
