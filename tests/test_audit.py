"""The audit trail: every read and change of an appointment or notification, recorded."""

import getpass
from datetime import time, timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from appointments.models import Appointment
from appointments.services import appointment_book
from audit.models import AppendOnly, AuditEntry
from relay.models import OutboxEvent
from tests.appointment_factories import next_weekday

pytestmark = pytest.mark.django_db


def book_via_api(client, doctor, hour=10):
    body = {
        "doctorId": doctor.id,
        "date": next_weekday().isoformat(),
        "timeSlot": f"{hour}:00",
        "reason": "Private words",
    }
    response = client.post("/api/appointments", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def audit_log(*args) -> str:
    out = StringIO()
    call_command("audit_log", *args, stdout=out)
    return out.getvalue()


def test_audit_log_lists_a_booking_and_a_view_with_the_user_id(
    patient, patient_client, doctor
):
    appointment_id = book_via_api(patient_client, doctor)
    viewed = patient_client.get(
        f"/api/appointments/{appointment_id}", HTTP_X_REQUEST_ID="req-42"
    )
    assert viewed.status_code == 200
    lines = audit_log("--appointment", appointment_id).splitlines()
    header, booked, seen, count = lines
    assert header.split()[:5] == ["at", "action", "user", "role", "records"]
    assert booked.split()[2:6] == ["booked", str(patient.pk), "patient", "appointment"]
    assert seen.split()[2:6] == ["viewed", str(patient.pk), "patient", "appointment"]
    assert appointment_id in booked and appointment_id in seen
    assert "127.0.0.1" in seen and "req-42" in seen
    assert count == "(2 entries)"
    assert "Private words" not in audit_log()  # ids only, never the record's content


def test_a_list_records_the_ids_it_returned(patient, patient_client, doctor):
    ids = [book_via_api(patient_client, doctor, hour) for hour in (9, 10, 11)]
    assert patient_client.get("/api/appointments").status_code == 200
    listed = AuditEntry.objects.get(action=AuditEntry.Action.LISTED)
    assert sorted(listed.ids) == sorted(ids)
    assert listed.actor_id == patient.pk
    assert audit_log("--user", str(patient.pk)).endswith("(4 entries)\n")


def test_a_request_writes_one_audit_insert(patient_client, doctor):
    book_via_api(patient_client, doctor)
    with CaptureQueriesContext(connection) as queries:
        assert patient_client.get("/api/appointments").status_code == 200
    inserts = [q for q in queries if q["sql"].startswith('INSERT INTO "audit_entry"')]
    assert len(inserts) == 1


def test_a_notification_list_is_recorded(patient, patient_client):
    assert patient_client.get("/api/notifications").status_code == 200
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.record_type) == ("listed", "notification")


def test_a_read_that_cannot_be_recorded_answers_503(patient, doctor, patient_client):
    booked = appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9)
    )
    request = patient_client.get  # the token is taken before the table goes away

    def broken_read():
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_entry RENAME TO audit_entry_away")
        try:
            return request(f"/api/appointments/{booked.id}")
        finally:
            with connection.cursor() as cursor:
                cursor.execute("ALTER TABLE audit_entry_away RENAME TO audit_entry")

    response = broken_read()
    assert response.status_code == 503
    assert "could not be recorded" in response.json()["detail"]
    assert booked.doctor.name not in response.content.decode()


def test_a_change_that_cannot_be_recorded_is_not_made(patient, doctor, patient_client):
    booked = appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9)
    )
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_entry RENAME TO audit_entry_away")
    try:
        response = patient_client.post(f"/api/appointments/{booked.id}/cancel")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_entry_away RENAME TO audit_entry")
    assert response.status_code == 503
    booked.refresh_from_db()
    assert booked.status == Appointment.Status.BOOKED
    assert OutboxEvent.objects.filter(type="appointment.cancelled").count() == 0


def test_a_booking_whose_entry_cannot_be_written_is_not_made(
    patient, doctor, patient_client
):
    """As for the other changes: no appointment, no event, and a 503 that says why."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_entry RENAME TO audit_entry_away")
    try:
        response = patient_client.post(
            "/api/appointments",
            {
                "doctorId": doctor.id,
                "date": next_weekday().isoformat(),
                "timeSlot": "09:00",
            },
            format="json",
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_entry_away RENAME TO audit_entry")
    assert response.status_code == 503, response.content
    assert "could not be recorded" in response.json()["detail"]
    assert Appointment.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


def test_entries_cannot_be_changed_or_deleted(patient, doctor):
    appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9)
    )
    entry = AuditEntry.objects.get()
    entry.action = "viewed"
    with pytest.raises(AppendOnly):
        entry.save()
    with pytest.raises(AppendOnly):
        entry.delete()
    with pytest.raises(AppendOnly):
        AuditEntry.objects.all().delete()
    with pytest.raises(AppendOnly):
        AuditEntry.objects.update(action="viewed")


def test_purge_deletes_only_entries_past_the_retention(settings, patient, doctor):
    appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9)
    )
    old = AuditEntry(
        action="viewed",
        record_type="appointment",
        at=timezone.now() - timedelta(days=6 * 366),
    )
    old.save()
    out = StringIO()
    call_command("audit_purge", stdout=out)
    assert "deleted 1 audit entries" in out.getvalue()
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["booked"]


def test_admin_lists_and_views_are_recorded(client, make_user, patient, doctor):
    booked = appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9)
    )
    nurse = make_user("nurse", is_staff=True, is_superuser=True)
    client.force_login(nurse)
    assert client.get("/admin/appointments/appointment/").status_code == 200
    page = f"/admin/appointments/appointment/{booked.id}/change/"
    assert client.get(page).status_code == 200
    listed, viewed = AuditEntry.objects.filter(actor_id=nurse.pk).order_by("pk")
    assert (listed.action, listed.ids) == ("admin_listed", [str(booked.id)])
    assert (viewed.action, viewed.ids) == ("admin_viewed", [str(booked.id)])
    assert viewed.actor_role == "staff"


def test_the_trail_in_the_admin_is_read_only_and_needs_its_permission(
    client, make_user, patient, doctor
):
    appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9)
    )
    entry = AuditEntry.objects.get()
    staff = make_user("clerk", is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/audit/auditentry/").status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_auditentry"))
    assert client.get("/admin/audit/auditentry/").status_code == 200
    assert client.get(f"/admin/audit/auditentry/{entry.pk}/change/").status_code == 200
    assert client.get("/admin/audit/auditentry/add/").status_code == 403
    delete = client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_outbox_replay_records_the_os_user_and_the_command(patient, doctor):
    booked = appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9)
    )
    OutboxEvent.objects.update(published_at=timezone.now(), partition=0, offset=0)
    call_command("outbox_replay", "--since", "1h", "--no-wait", stdout=StringIO())
    entry = AuditEntry.objects.get(action="republished")
    assert entry.ids == [str(booked.id)]
    assert entry.os_user == getpass.getuser()
    assert entry.command and entry.actor_role == "operator"
