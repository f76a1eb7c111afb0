"""Booking rules: in the service (clear 4xx naming the field) and in the database."""

from datetime import date, time, timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from appointments.models import Appointment
from appointments.services import appointment_book, appointment_cancel
from core.errors import ApplicationError, Conflict
from relay.models import OutboxEvent
from tests.appointment_factories import (
    booking,
    make_doctor,
    next_weekday,
    next_weekend_day,
)

pytestmark = pytest.mark.django_db


def test_seed_request_verbatim_books_with_am_pm_and_string_doctor_id(
    patient_client, doctor
):
    day = next_weekday()
    seed = {
        "doctorId": str(doctor.id),
        "doctorName": "Dr. Smith",
        "date": day.isoformat(),
        "timeSlot": "10:00 AM",
        "reason": "Check-up",
    }
    response = patient_client.post("/api/appointments", seed, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["timeSlot"], body["date"], body["status"]) == (
        "10:00",
        day.isoformat(),
        "booked",
    )
    assert body["doctorName"] == "Dr. Smith"

    response = patient_client.post(
        "/api/appointments", seed | {"timeSlot": "14:30"}, format="json"
    )
    assert response.status_code == 201, response.content


def test_booking_writes_appointment_and_booked_event_in_one_transaction(
    patient, doctor
):
    appointment = appointment_book(
        patient=patient,
        doctor=doctor,
        date=next_weekday(),
        time_slot=time(9, 30),
        reason="Cough",
    )
    [event] = OutboxEvent.objects.filter(aggregateid=str(appointment.id))
    assert event.type == "appointment.booked"
    assert event.payload == {
        "appointmentId": str(appointment.id),
        "patientId": patient.id,
        "doctorId": doctor.id,
        "doctorUserId": doctor.user_id,
        "doctorName": "Dr. Smith",
        "date": appointment.date.isoformat(),
        "timeSlot": "09:30",
        "status": "booked",
    }
    # the reason, typed by the patient, stays in the database (DESIGN.md section 5)
    assert appointment.reason == "Cough"


def test_failed_booking_leaves_no_appointment_and_no_event(
    patient, other_patient, doctor
):
    day = next_weekday()
    appointment_book(patient=patient, doctor=doctor, date=day, time_slot=time(10))
    with pytest.raises(Conflict):
        appointment_book(
            patient=other_patient, doctor=doctor, date=day, time_slot=time(10)
        )
    assert Appointment.objects.count() == 1
    assert OutboxEvent.objects.count() == 1


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"date": "2020-01-06"}, "date", "The date is in the past."),
        ({"date": "far"}, "date", "Date has the wrong format. Use YYYY-MM-DD"),
        ({"date": "2026-02-30"}, "date", "2026-02-30 is not a day of the calendar."),
        (
            {"doctorId": "²"},
            "doctorId",
            'A doctor id is a whole number, e.g. 1 or "1", not "²".',
        ),
        ({"date": 20260504}, "date", "Date has the wrong format"),
        ({"timeSlot": "25:00"}, "timeSlot", "Time has the wrong format"),
        ({"timeSlot": "10:15"}, "timeSlot", "10:15 is not one of Dr. Smith's slots"),
        ({"timeSlot": "08:30"}, "timeSlot", "within 09:00-17:00 on"),
        ({"timeSlot": "17:00"}, "timeSlot", "not one of Dr. Smith's slots"),
        ({"doctorId": 999999}, "doctorId", "No doctor with id 999999."),
        ({"doctorId": "abc"}, "doctorId", "A doctor id is a whole number, e.g. 1"),
        ({"doctorId": 1.5}, "doctorId", 'e.g. 1 or "1", not 1.5.'),
        ({"doctorId": "9" * 30}, "doctorId", "No doctor with id 9999"),
        ({"timeSlot": "10:5"}, "timeSlot", "Time has the wrong format"),
        ({"doctorName": "Dr. Who"}, "doctorName", "is not named 'Dr. Who'"),
        ({"reason": "x" * 501}, "reason", "no more than 500 characters"),
    ],
)
def test_invalid_booking_answers_400_naming_the_field(
    patient_client, doctor, change, field, message
):
    response = patient_client.post(
        "/api/appointments", booking(doctor, next_weekday()) | change, format="json"
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert list(body["errors"]) == [field]
    assert message in body["errors"][field][0]
    assert body["detail"]


def test_missing_fields_are_each_named(patient_client):
    response = patient_client.post("/api/appointments", {}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"doctorId", "date", "timeSlot"}


def test_errors_not_tied_to_one_field_use_a_camel_case_key(patient_client):
    response = patient_client.post(
        "/api/appointments", ["not", "an", "object"], format="json"
    )
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["nonFieldErrors"]


def test_reason_of_500_characters_is_accepted(patient_client, doctor):
    response = patient_client.post(
        "/api/appointments",
        booking(doctor, next_weekday(), reason="x" * 500),
        format="json",
    )
    assert response.status_code == 201, response.content


def test_day_the_doctor_does_not_work_is_refused(patient_client, doctor):
    response = patient_client.post(
        "/api/appointments", booking(doctor, next_weekend_day()), format="json"
    )
    assert response.status_code == 400
    [message] = response.json()["errors"]["date"]
    assert message.startswith("Dr. Smith does not work on S")


def test_slot_that_already_passed_today_is_refused(patient, make_user):
    every_day = make_doctor(make_user(), days=range(7), start=time(0), end=time(23, 30))
    with pytest.raises(ApplicationError) as exc:
        appointment_book(
            patient=patient,
            doctor=every_day,
            date=timezone.localdate(),
            time_slot=time(0),
        )
    assert (exc.value.status, exc.value.field) == (400, "timeSlot")


def test_date_beyond_the_booking_horizon_is_refused(patient_client, doctor, settings):
    settings.BOOKING_HORIZON_DAYS = 30
    response = patient_client.post(
        "/api/appointments", booking(doctor, next_weekday(days_ahead=40)), format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["date"] == [
        "Appointments can be booked at most 30 days ahead."
    ]


def test_taken_slot_answers_409(patient_client, other_patient, doctor):
    day = next_weekday()
    appointment_book(patient=other_patient, doctor=doctor, date=day, time_slot=time(10))
    response = patient_client.post(
        "/api/appointments", booking(doctor, day), format="json"
    )
    assert response.status_code == 409
    assert (
        response.json()["detail"] == "This slot is already booked; choose another one."
    )


def test_patient_cannot_hold_two_appointments_at_the_same_time(
    patient_client, doctor, make_user
):
    other = make_doctor(make_user())
    day = next_weekday()
    assert (
        patient_client.post(
            "/api/appointments", booking(doctor, day), format="json"
        ).status_code
        == 201
    )
    response = patient_client.post(
        "/api/appointments", booking(other, day), format="json"
    )
    assert response.status_code == 409
    assert response.json()["detail"] == "You already have an appointment at that time."


def test_patient_overlap_counts_slot_lengths(patient, doctor, make_user):
    # Dr. Smith's 10:00 slot lasts until 10:30; a 15-minute slot at 10:15 overlaps it.
    short = make_doctor(make_user(), slot_minutes=15)
    day = next_weekday()
    appointment_book(patient=patient, doctor=doctor, date=day, time_slot=time(10))
    with pytest.raises(Conflict):
        appointment_book(
            patient=patient, doctor=short, date=day, time_slot=time(10, 15)
        )
    assert appointment_book(
        patient=patient, doctor=short, date=day, time_slot=time(10, 30)
    )


def test_patient_overlap_reaches_back_the_longest_slot(patient, make_user):
    # Only appointments that can overlap are read: a 4-hour slot at 08:00 still
    # covers 11:45 and ends at 12:00.
    long = make_doctor(make_user(), slot_minutes=240, start=time(8), end=time(16))
    short = make_doctor(make_user(), slot_minutes=15, start=time(7), end=time(16))
    day = next_weekday()
    appointment_book(patient=patient, doctor=long, date=day, time_slot=time(8))
    with pytest.raises(Conflict):
        appointment_book(
            patient=patient, doctor=short, date=day, time_slot=time(11, 45)
        )
    assert appointment_book(patient=patient, doctor=short, date=day, time_slot=time(12))


def test_slot_at_midnight_is_checked_against_the_day_start(patient, make_user):
    night = make_doctor(make_user(), slot_minutes=60, start=time(0), end=time(4))
    other = make_doctor(make_user(), slot_minutes=30, start=time(0), end=time(4))
    day = next_weekday()
    appointment_book(patient=patient, doctor=night, date=day, time_slot=time(0))
    with pytest.raises(Conflict):
        appointment_book(patient=patient, doctor=other, date=day, time_slot=time(0, 30))


def test_cancelled_slot_can_be_booked_again(patient, other_patient, doctor):
    day = next_weekday()
    first = appointment_book(
        patient=patient, doctor=doctor, date=day, time_slot=time(10)
    )
    appointment_cancel(appointment=first, by=patient)
    second = appointment_book(
        patient=other_patient, doctor=doctor, date=day, time_slot=time(10)
    )
    assert second.status == "booked"


def test_doctor_cannot_book_with_themselves(doctor_client, doctor):
    response = doctor_client.post(
        "/api/appointments", booking(doctor, next_weekday()), format="json"
    )
    assert response.status_code == 400
    assert "doctorId" in response.json()["errors"]


def test_database_holds_one_active_appointment_per_doctor_slot(
    patient, other_patient, doctor
):
    day = next_weekday()
    Appointment.objects.create(
        patient=patient, doctor=doctor, date=day, time_slot=time(10)
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Appointment.objects.create(
            patient=other_patient, doctor=doctor, date=day, time_slot=time(10)
        )
    # inactive rows do not count: a cancelled one may share the slot
    Appointment.objects.create(
        patient=other_patient,
        doctor=doctor,
        date=day,
        time_slot=time(10),
        status="cancelled",
    )


def test_database_holds_one_active_appointment_per_patient_time(
    patient, doctor, make_user
):
    other = make_doctor(make_user())
    day = next_weekday()
    Appointment.objects.create(
        patient=patient, doctor=doctor, date=day, time_slot=time(10)
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Appointment.objects.create(
            patient=patient, doctor=other, date=day, time_slot=time(10)
        )


def test_integrity_error_from_a_race_becomes_409(
    patient, other_patient, doctor, monkeypatch
):
    """A booking committed between our check and our insert: the constraint decides."""
    from appointments import rules

    day = next_weekday()
    appointment_book(patient=other_patient, doctor=doctor, date=day, time_slot=time(10))
    monkeypatch.setattr(rules, "check_free", lambda **kwargs: None)
    with pytest.raises(Conflict) as exc:
        appointment_book(patient=patient, doctor=doctor, date=day, time_slot=time(10))
    assert exc.value.message == rules.SLOT_TAKEN
    assert Appointment.objects.filter(date=day).count() == 1


def test_free_slots_follow_bookings(patient, doctor):
    day = next_weekday()
    from appointments.selectors import doctor_free_slots

    slots = doctor_free_slots(doctor=doctor, day=day)
    assert slots[0] == time(9) and slots[-1] == time(16, 30) and len(slots) == 16
    appointment_book(patient=patient, doctor=doctor, date=day, time_slot=time(9))
    assert time(9) not in doctor_free_slots(doctor=doctor, day=day)
    assert (
        doctor_free_slots(doctor=doctor, day=timezone.localdate() - timedelta(days=1))
        == []
    )


def test_no_setting_turns_the_outbox_off(settings, patient, doctor):
    # The bench's baseline without events is bench/settings_baseline.py (tested in
    # tests/test_bench_baseline.py); the setting that used to switch it is inert.
    settings.OUTBOX_BENCH_DISABLE = True
    appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(10)
    )
    assert OutboxEvent.objects.count() == 1


@pytest.mark.parametrize(
    "text, day",
    [("2026-05-04", date(2026, 5, 4)), ("2026-5-4", date(2026, 5, 4))],
)
def test_a_day_is_read_zero_padded_or_not(text, day):
    from core.api import DayField

    assert DayField().to_internal_value(text) == day
