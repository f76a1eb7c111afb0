"""Reads of doctors, free slots and appointments, each scoped to what the caller may see."""

from datetime import date as date_type
from datetime import datetime, time, timedelta
from uuid import UUID

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from appointments.models import Appointment, Doctor, WorkingHours, minutes_of, overlaps
from core.errors import NotFound


def doctor_list(*, specialty: str = "") -> QuerySet[Doctor]:
    doctors = Doctor.objects.prefetch_related(
        Prefetch(
            "working_hours", queryset=WorkingHours.objects.order_by("weekday", "start")
        )
    )
    if specialty:
        doctors = doctors.filter(specialty__iexact=specialty)
    return doctors


def doctor_get(*, doctor_id: int) -> Doctor:
    try:
        return doctor_list().get(pk=doctor_id)
    except Doctor.DoesNotExist:
        raise NotFound("No doctor with this id.") from None


def doctor_free_slots(*, doctor: Doctor, day: date_type) -> list[time]:
    """The slots of a day that can still be booked: on the grid, ahead, not taken."""
    today = timezone.localdate()
    if day < today or day > today + timedelta(days=settings.BOOKING_HORIZON_DAYS):
        return []
    now = timezone.localtime()
    length = doctor.slot_minutes
    taken = [
        (minutes_of(t), length)
        for t in Appointment.objects.active()
        .filter(doctor=doctor, date=day)
        .values_list("time_slot", flat=True)
    ]
    return [
        slot
        for slot in doctor.slot_grid(day)
        if timezone.make_aware(datetime.combine(day, slot)) > now
        and not overlaps(minutes_of(slot), length, taken)
    ]


def appointment_list(
    *,
    user,
    status: str = "",
    date_from: date_type | None = None,
    date_to: date_type | None = None,
    doctor_id: int | None = None,
) -> QuerySet[Appointment]:
    appointments = Appointment.objects.visible_to(user).select_related("doctor")
    if status:
        appointments = appointments.filter(status=status)
    if date_from:
        appointments = appointments.filter(date__gte=date_from)
    if date_to:
        appointments = appointments.filter(date__lte=date_to)
    if doctor_id is not None:
        appointments = appointments.filter(doctor_id=doctor_id)
    return appointments.order_by("date", "time_slot", "id")


def appointment_get(*, user, appointment_id: UUID) -> Appointment:
    """One appointment the user may see; any other answers 404, so ids do not leak."""
    try:
        return (
            Appointment.objects.visible_to(user)
            .select_related("doctor")
            .get(pk=appointment_id)
        )
    except Appointment.DoesNotExist:
        raise NotFound("No appointment with this id.") from None
