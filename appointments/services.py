"""Appointment use cases: each validates, writes, and enqueues its event in one transaction."""

from datetime import date as date_type
from datetime import datetime, time

from django.db import transaction
from django.utils import timezone

from appointments.events import APPOINTMENT_BOOKED, appointment_event
from appointments.models import Appointment, Doctor
from healthcare.errors import ApplicationError
from relay.events import enqueue


@transaction.atomic
def appointment_book(
    *,
    patient,
    doctor: Doctor,
    date: date_type,
    time_slot: time,
    reason: str = "",
    traceparent: str = "",
) -> Appointment:
    """Book a slot with a doctor for a patient and emit ``appointment.booked``."""
    starts_at = timezone.make_aware(datetime.combine(date, time_slot))
    if starts_at <= timezone.now():
        raise ApplicationError("The appointment must be in the future.", field="date")
    appointment = Appointment.objects.create(
        patient=patient, doctor=doctor, date=date, time_slot=time_slot, reason=reason
    )
    enqueue(appointment_event(APPOINTMENT_BOOKED, appointment, traceparent=traceparent))
    return appointment
