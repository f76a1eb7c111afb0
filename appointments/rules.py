"""The booking rules: when a slot may be booked, and by whom (used by the services).

Each check raises ApplicationError (400) or Conflict (409) naming what was wrong.
"""

from datetime import date as date_type
from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection
from django.utils import timezone

from appointments.models import (
    MAX_SLOT_MINUTES,
    Appointment,
    Doctor,
    Weekday,
    minutes_of,
    overlaps,
    time_of,
)
from core.errors import ApplicationError, Conflict

SLOT_TAKEN = "This slot is already booked; choose another one."
PATIENT_BUSY = "You already have an appointment at that time."
TOO_MANY = (
    "You already have {limit} upcoming appointments, the most allowed "
    "(MAX_ACTIVE_APPOINTMENTS_PER_PATIENT); cancel one to book another."
)


def check_bookable(doctor: Doctor, day: date_type, time_slot: time) -> None:
    """The slot is in the future, inside the horizon, on the doctor's grid."""
    today = timezone.localdate()
    if day < today:
        raise ApplicationError("The date is in the past.", field="date")
    if day > today + timedelta(days=settings.BOOKING_HORIZON_DAYS):
        raise ApplicationError(
            f"Appointments can be booked at most {settings.BOOKING_HORIZON_DAYS} days ahead.",
            field="date",
        )
    if timezone.make_aware(datetime.combine(day, time_slot)) <= timezone.now():
        raise ApplicationError("This time has already passed.", field="timeSlot")
    periods = doctor.periods_on(day)
    if not periods:
        raise ApplicationError(
            f"{doctor.name} does not work on {Weekday(day.weekday()).label}s.",
            field="date",
        )
    if time_slot not in doctor.slot_grid(day, periods):
        hours = ", ".join(f"{p.start:%H:%M}-{p.end:%H:%M}" for p in periods)
        weekday = Weekday(day.weekday()).label
        raise ApplicationError(
            f"{time_slot:%H:%M} is not one of {doctor.name}'s slots: "
            f"{doctor.slot_minutes}-minute slots within {hours} on {weekday}s.",
            field="timeSlot",
        )


def check_free(
    *,
    doctor: Doctor,
    patient,
    day: date_type,
    time_slot: time,
    moving: Appointment | None = None,
) -> None:
    """Neither the doctor nor the patient has another active appointment at that time."""
    start = minutes_of(time_slot)
    end = start + doctor.slot_minutes
    doctor_busy, patient_busy = [], []
    for doctor_id, patient_id, other_start, other_minutes in Appointment.objects.nearby(
        doctor_id=doctor.pk,
        patient_id=patient.pk,
        day=day,
        # Only these can overlap [start, end): no slot is longer than the maximum.
        first=time_of(max(0, start - MAX_SLOT_MINUTES + 1)),
        last=time_of(min(end - 1, 24 * 60 - 1)),
        excluding=moving.pk if moving is not None else None,
    ):
        other = (minutes_of(other_start), other_minutes)
        if doctor_id == doctor.pk:
            doctor_busy.append(other)
        if patient_id == patient.pk:
            patient_busy.append(other)
    if overlaps(start, doctor.slot_minutes, doctor_busy):
        raise Conflict(SLOT_TAKEN, field="timeSlot")
    if overlaps(start, doctor.slot_minutes, patient_busy):
        raise Conflict(PATIENT_BUSY, field="timeSlot")


def lock_patient(patient) -> int:
    """Serialise one patient's bookings (so that two overlapping ones cannot both
    pass) and count their upcoming ones, in one statement."""
    # NO KEY UPDATE: it serialises the patient's bookings like FOR UPDATE, but does
    # not block the consumer's foreign-key checks (KEY SHARE) on the same user row.
    # SQLite has no row locks: its IMMEDIATE transactions already run one at a time.
    lock = " FOR NO KEY UPDATE" if connection.features.has_select_for_update else ""
    q = connection.ops.quote_name
    users, appointments = get_user_model()._meta.db_table, Appointment._meta.db_table
    sql = (
        f"SELECT (SELECT COUNT(*) FROM {q(appointments)} a WHERE a.patient_id = u.id"
        f" AND a.status = %s AND a.date >= %s) FROM {q(users)} u WHERE u.id = %s{lock}"
    )
    today = connection.ops.adapt_datefield_value(timezone.localdate())
    with connection.cursor() as cursor:
        cursor.execute(sql, [Appointment.Status.BOOKED.value, today, patient.pk])
        return cursor.fetchone()[0]


def check_quota(upcoming: int) -> None:
    """A patient holds at most MAX_ACTIVE_APPOINTMENTS_PER_PATIENT upcoming bookings."""
    limit = settings.MAX_ACTIVE_APPOINTMENTS_PER_PATIENT
    if upcoming >= limit:
        raise Conflict(TOO_MANY.format(limit=limit), extra={"limit": limit})


def conflict_from(exc: IntegrityError) -> Conflict:
    """Name the rule a concurrent request broke (both databases' messages)."""
    text = str(exc)
    if "one_active_per_patient_time" in text or "appointment.patient_id" in text:
        return Conflict(PATIENT_BUSY, field="timeSlot")
    if "one_active_per_doctor_slot" in text or "appointment.doctor_id" in text:
        return Conflict(SLOT_TAKEN, field="timeSlot")
    raise exc
