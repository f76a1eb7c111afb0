"""Staff act through the API by model permission, not by is_staff alone."""

from datetime import time

import pytest
from django.contrib.auth.models import Permission

from appointments.services import appointment_book
from tests.appointment_factories import next_weekday
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def booked(patient, doctor):
    return appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9)
    )


def test_is_staff_alone_sees_and_changes_nothing_of_others(make_user, booked):
    client = client_for(make_user("temp-staff", is_staff=True))
    assert client.get("/api/appointments").json()["count"] == 0
    assert client.get(f"/api/appointments/{booked.id}").status_code == 404
    assert client.post(f"/api/appointments/{booked.id}/cancel").status_code == 404


def test_view_permission_lets_staff_read_but_not_change(make_user, booked):
    user = make_user("reader", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_appointment"))
    client = client_for(user)
    assert client.get("/api/appointments").json()["count"] == 1
    assert client.get(f"/api/appointments/{booked.id}").status_code == 200
    assert client.post(f"/api/appointments/{booked.id}/cancel").status_code == 404


def test_change_permission_lets_staff_change(staff_client, booked):
    response = staff_client.post(f"/api/appointments/{booked.id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
