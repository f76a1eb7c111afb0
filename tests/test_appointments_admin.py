"""The staff admin: actions go through the services (and so the outbox); rows stay read-only."""

from datetime import time

import pytest
from django.test import Client

from appointments.models import Appointment, WorkingHours
from appointments.services import appointment_book
from relay.models import OutboxEvent
from tests.appointment_factories import next_weekday, past_appointment

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/appointments/appointment/"


@pytest.fixture
def admin_client(make_user):
    client = Client()
    client.force_login(make_user("boss", is_staff=True, is_superuser=True))
    return client


def run_action(client, action, *appointments):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(a.id) for a in appointments]},
        follow=True,
    )


def test_cancel_action_uses_the_service_and_writes_the_event(
    admin_client, patient, doctor
):
    appointment = appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(10)
    )
    response = run_action(admin_client, "cancel_appointments", appointment)
    assert response.status_code == 200
    assert "1 appointment(s) cancelled." in response.content.decode()
    appointment.refresh_from_db()
    assert appointment.status == "cancelled"
    cancelled = OutboxEvent.objects.get(
        aggregateid=str(appointment.id), type="appointment.cancelled"
    )
    assert cancelled.payload["cancelledBy"] == "staff"


def test_complete_action_reports_what_it_refused(admin_client, patient, doctor):
    started = past_appointment(patient=patient, doctor=doctor)
    future = appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9)
    )
    response = run_action(admin_client, "complete_appointments", started, future)
    page = response.content.decode()
    assert "1 appointment(s) completed." in page
    assert "has not started yet" in page
    assert Appointment.objects.get(pk=started.pk).status == "completed"
    assert Appointment.objects.get(pk=future.pk).status == "booked"
    assert OutboxEvent.objects.filter(type="appointment.completed").count() == 1


def test_no_show_action(admin_client, patient, doctor):
    started = past_appointment(patient=patient, doctor=doctor)
    run_action(admin_client, "no_show_appointments", started)
    assert Appointment.objects.get(pk=started.pk).status == "no_show"
    assert OutboxEvent.objects.filter(type="appointment.no_show").count() == 1


def test_appointments_cannot_be_added_edited_or_deleted_in_the_admin(
    admin_client, patient, doctor
):
    appointment = appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(10)
    )
    change = f"{CHANGELIST}{appointment.id}/change/"
    assert admin_client.get(change).status_code == 200  # view only
    assert admin_client.post(change, {"status": "cancelled"}).status_code == 403
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert (
        admin_client.post(
            f"{CHANGELIST}{appointment.id}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    appointment.refresh_from_db()
    assert appointment.status == "booked"
    assert OutboxEvent.objects.count() == 1


def test_changelist_search_and_filters(admin_client, patient, doctor):
    appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(10)
    )
    assert admin_client.get(CHANGELIST, {"q": "alice"}).context["cl"].result_count == 1
    assert admin_client.get(CHANGELIST, {"q": "nobody"}).context["cl"].result_count == 0
    assert (
        admin_client.get(CHANGELIST, {"status__exact": "cancelled"})
        .context["cl"]
        .result_count
        == 0
    )


def test_working_hours_are_edited_inline_on_the_doctor(admin_client, doctor):
    hours = list(WorkingHours.objects.filter(doctor=doctor).order_by("weekday"))
    data = {
        "user": doctor.user_id,
        "name": doctor.name,
        "specialty": doctor.specialty,
        "slot_minutes": 20,
        "working_hours-TOTAL_FORMS": len(hours) + 1,
        "working_hours-INITIAL_FORMS": len(hours),
        "working_hours-MIN_NUM_FORMS": 0,
        "working_hours-MAX_NUM_FORMS": 1000,
    }
    for n, h in enumerate(hours):
        data |= {
            f"working_hours-{n}-id": h.id,
            f"working_hours-{n}-doctor": doctor.id,
            f"working_hours-{n}-weekday": h.weekday,
            f"working_hours-{n}-start": "08:00" if h.weekday == 0 else "09:00",
            f"working_hours-{n}-end": "17:00",
        }
    n = len(hours)
    data |= {
        f"working_hours-{n}-doctor": doctor.id,
        f"working_hours-{n}-weekday": 5,
        f"working_hours-{n}-start": "10:00",
        f"working_hours-{n}-end": "12:00",
    }
    response = admin_client.post(
        f"/admin/appointments/doctor/{doctor.id}/change/", data
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    doctor.refresh_from_db()
    assert doctor.slot_minutes == 20
    monday = WorkingHours.objects.get(doctor=doctor, weekday=0)
    assert monday.start == time(8)
    assert WorkingHours.objects.get(doctor=doctor, weekday=5).end == time(12)


def test_working_period_ending_before_it_starts_is_refused_with_a_message(
    admin_client, doctor
):
    data = {
        "user": doctor.user_id,
        "name": doctor.name,
        "specialty": doctor.specialty,
        "slot_minutes": 30,
        "working_hours-TOTAL_FORMS": 1,
        "working_hours-INITIAL_FORMS": 0,
        "working_hours-MIN_NUM_FORMS": 0,
        "working_hours-MAX_NUM_FORMS": 1000,
        "working_hours-0-doctor": doctor.id,
        "working_hours-0-weekday": 6,
        "working_hours-0-start": "12:00",
        "working_hours-0-end": "10:00",
    }
    response = admin_client.post(
        f"/admin/appointments/doctor/{doctor.id}/change/", data
    )
    assert response.status_code == 200
    assert "A working period must start before it ends." in response.content.decode()
    assert not WorkingHours.objects.filter(doctor=doctor, weekday=6).exists()
