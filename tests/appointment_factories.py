"""Small builders for the appointment tests: dates, doctors, appointments, clients."""

from datetime import date, time, timedelta

from django.utils import timezone

from appointments.models import Appointment, Doctor
from appointments.services import doctor_set_working_hours


def next_weekday(days_ahead: int = 7, weekday: int | None = None) -> date:
    """A Monday-to-Friday date at least ``days_ahead`` days from today (or that weekday)."""
    d = timezone.localdate() + timedelta(days=days_ahead)
    while d.weekday() >= 5 or (weekday is not None and d.weekday() != weekday):
        d += timedelta(days=1)
    return d


def next_weekend_day(days_ahead: int = 1) -> date:
    d = timezone.localdate() + timedelta(days=days_ahead)
    while d.weekday() < 5:
        d += timedelta(days=1)
    return d


def make_doctor(
    user,
    *,
    name="Dr. Jones",
    specialty="Cardiology",
    slot_minutes=30,
    days=range(5),
    start=time(9),
    end=time(17),
) -> Doctor:
    doctor = Doctor.objects.create(
        user=user, name=name, specialty=specialty, slot_minutes=slot_minutes
    )
    doctor_set_working_hours(doctor=doctor, weekdays=days, start=start, end=end)
    return doctor


def past_appointment(
    *, patient, doctor, days_ago: int = 1, at: time = time(10), **extra
) -> Appointment:
    """A booked appointment whose slot has started (made directly: booking refuses the past)."""
    return Appointment.objects.create(
        patient=patient,
        doctor=doctor,
        date=timezone.localdate() - timedelta(days=days_ago),
        time_slot=at,
        **extra,
    )


def booking(doctor, day: date, time_slot: str = "10:00", **extra) -> dict:
    return {
        "doctorId": doctor.id,
        "date": day.isoformat(),
        "timeSlot": time_slot,
    } | extra


def book_each_hour(client, doctor, day, hours) -> None:
    """Book ``doctor`` at each of ``hours`` o'clock on ``day``; every one must be 201."""
    for hour in hours:
        book = {
            "doctorId": doctor.id,
            "date": day.isoformat(),
            "timeSlot": f"{hour}:00",
        }
        response = client.post("/api/appointments", book, format="json")
        assert response.status_code == 201, response.content
