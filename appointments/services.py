"""Appointment use cases: each validates, writes, and enqueues its event in one transaction.

Every transition locks the appointment row (``select_for_update``) before it enqueues,
so one appointment's events get outbox ids in commit order (DESIGN.md section 6).
"""

from collections.abc import Iterable
from datetime import date as date_type
from datetime import time

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from appointments import rules
from appointments.events import (
    APPOINTMENT_BOOKED,
    APPOINTMENT_CANCELLED,
    APPOINTMENT_COMPLETED,
    APPOINTMENT_NO_SHOW,
    APPOINTMENT_RESCHEDULED,
    appointment_event,
)
from appointments.models import (
    Appointment,
    Doctor,
    WorkingHours,
)
from audit.models import AuditEntry
from audit.trail import audit_change
from core.errors import ApplicationError, Forbidden, NotFound
from core.inserts import insert_one
from relay.events import enqueue

# -- patients --------------------------------------------------------------------


def patient_register(
    *,
    username: str,
    password: str,
    email: str,
    first_name: str = "",
    last_name: str = "",
):
    """Create a patient's account; Django's password validators decide what is strong enough."""
    User = get_user_model()
    taken = ApplicationError("This username is taken.", field="username")
    if User.objects.filter(username__iexact=username).exists():
        raise taken
    user = User(
        username=username, email=email, first_name=first_name, last_name=last_name
    )
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:  # the same name registered at the same moment
        raise taken from None
    return user


# -- doctors ---------------------------------------------------------------------


@transaction.atomic
def doctor_set_working_hours(
    *, doctor: Doctor, weekdays: Iterable[int], start: time, end: time
) -> list[WorkingHours]:
    """Make ``start``-``end`` the only working period on each weekday given (idempotent)."""
    weekdays = sorted(set(weekdays))
    if start >= end:
        raise ApplicationError(
            "The working period must start before it ends.", field="end"
        )
    WorkingHours.objects.filter(doctor=doctor, weekday__in=weekdays).delete()
    return WorkingHours.objects.bulk_create(
        WorkingHours(doctor=doctor, weekday=day, start=start, end=end)
        for day in weekdays
    )


def _emit(
    event_type: str, appointment: Appointment, *, traceparent: str, extra=None
) -> None:
    """Write the event to the outbox in the caller's transaction."""
    enqueue(
        appointment_event(event_type, appointment, extra=extra, traceparent=traceparent)
    )


# -- use cases -----------------------------------------------------------------------


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
    if doctor.user_id == patient.pk:
        raise ApplicationError(
            "A doctor cannot book an appointment with themselves.", field="doctorId"
        )
    rules.check_bookable(doctor, date, time_slot)
    try:
        with transaction.atomic():
            rules.check_quota(rules.lock_patient(patient))
            rules.check_free(
                doctor=doctor, patient=patient, day=date, time_slot=time_slot
            )
            appointment = Appointment(
                patient=patient,
                doctor=doctor,
                date=date,
                time_slot=time_slot,
                reason=reason,
            )
            insert_one(appointment)
            _emit(APPOINTMENT_BOOKED, appointment, traceparent=traceparent)
            audit_change(
                AuditEntry.Action.BOOKED, appointment, by=patient, role="patient"
            )
    except IntegrityError as exc:
        raise rules.conflict_from(exc) from None
    return appointment


def _locked(appointment: Appointment) -> Appointment:
    """The appointment's row, locked for this transaction and freshly read."""
    return (
        Appointment.objects.select_for_update(of=("self",))
        .select_related("doctor")
        .get(pk=appointment.pk)
    )


def _role(user, appointment: Appointment) -> str:
    """How ``user`` relates to the appointment: staff (by permission), doctor, patient."""
    if user.is_staff and user.has_perm("appointments.change_appointment"):
        return "staff"
    if appointment.doctor.user_id == user.pk:
        return "doctor"
    if appointment.patient_id == user.pk:
        return "patient"
    raise NotFound("No appointment with this id.")


def appointment_reschedule(
    *,
    appointment: Appointment,
    by,
    date: date_type,
    time_slot: time,
    traceparent: str = "",
) -> Appointment:
    """Move a booked appointment to a free slot of the same doctor; the old slot is freed."""
    try:
        with transaction.atomic():
            appointment = _locked(appointment)
            role = _role(by, appointment)
            appointment.require_movable()
            previous = {
                "previousDate": appointment.date.isoformat(),
                "previousTimeSlot": appointment.time_slot.strftime("%H:%M"),
            }
            rules.check_bookable(appointment.doctor, date, time_slot)
            rules.lock_patient(appointment.patient)
            rules.check_free(
                doctor=appointment.doctor,
                patient=appointment.patient,
                day=date,
                time_slot=time_slot,
                moving=appointment,
            )
            appointment.reschedule(date=date, time_slot=time_slot)
            _emit(
                APPOINTMENT_RESCHEDULED,
                appointment,
                extra=previous | {"rescheduledBy": role},
                traceparent=traceparent,
            )
            audit_change(AuditEntry.Action.RESCHEDULED, appointment, by=by, role=role)
    except IntegrityError as exc:
        raise rules.conflict_from(exc) from None
    return appointment


@transaction.atomic
def appointment_cancel(
    *, appointment: Appointment, by, traceparent: str = ""
) -> Appointment:
    """Cancel a booked appointment (its patient, its doctor or staff) and free the slot."""
    appointment = _locked(appointment)
    role = _role(by, appointment)
    appointment.cancel()
    _emit(
        APPOINTMENT_CANCELLED,
        appointment,
        extra={"cancelledBy": role},
        traceparent=traceparent,
    )
    audit_change(AuditEntry.Action.CANCELLED, appointment, by=by, role=role)
    return appointment


def _require_clinician(role: str, action: str) -> None:
    if role == "patient":
        raise Forbidden(f"Only the doctor or clinic staff can {action} an appointment.")


@transaction.atomic
def appointment_complete(
    *, appointment: Appointment, by, traceparent: str = ""
) -> Appointment:
    """Mark an appointment that has started as completed (its doctor or staff)."""
    appointment = _locked(appointment)
    role = _role(by, appointment)
    _require_clinician(role, "complete")
    appointment.complete()
    _emit(APPOINTMENT_COMPLETED, appointment, traceparent=traceparent)
    audit_change(AuditEntry.Action.COMPLETED, appointment, by=by, role=role)
    return appointment


@transaction.atomic
def appointment_mark_no_show(
    *, appointment: Appointment, by, traceparent: str = ""
) -> Appointment:
    """Record that the patient did not come (its doctor or staff, once the slot started)."""
    appointment = _locked(appointment)
    role = _role(by, appointment)
    _require_clinician(role, "mark no-show")
    appointment.mark_no_show()
    _emit(APPOINTMENT_NO_SHOW, appointment, traceparent=traceparent)
    audit_change(AuditEntry.Action.NO_SHOW, appointment, by=by, role=role)
    return appointment
