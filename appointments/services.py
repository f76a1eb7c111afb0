"""Appointment use cases: each validates, writes, and enqueues its event in one transaction.

Every transition locks the appointment row (``select_for_update``) before it enqueues,
so one appointment's events get outbox ids in commit order (DESIGN.md section 6).
"""

from collections.abc import Iterable
from datetime import date as date_type
from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from appointments.events import (
    APPOINTMENT_BOOKED,
    APPOINTMENT_CANCELLED,
    APPOINTMENT_COMPLETED,
    APPOINTMENT_NO_SHOW,
    APPOINTMENT_RESCHEDULED,
    appointment_event,
)
from appointments.models import (
    MAX_SLOT_MINUTES,
    Appointment,
    Doctor,
    Weekday,
    WorkingHours,
    minutes_of,
    overlaps,
    time_of,
)
from audit.models import AuditEntry
from audit.trail import audit_change
from core.errors import ApplicationError, Conflict, Forbidden, NotFound
from relay.events import enqueue

SLOT_TAKEN = "This slot is already booked; choose another one."
PATIENT_BUSY = "You already have an appointment at that time."
TOO_MANY = (
    "You already have {limit} upcoming appointments, the most allowed "
    "(MAX_ACTIVE_APPOINTMENTS_PER_PATIENT); cancel one to book another."
)


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


# -- booking rules -----------------------------------------------------------------


def _check_bookable(doctor: Doctor, day: date_type, time_slot: time) -> None:
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


def _check_free(
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


def _lock_patient(patient) -> int:
    """Serialise one patient's bookings (so that two overlapping ones cannot both
    pass) and count their upcoming ones, in one statement."""
    # SQLite has no row locks: its IMMEDIATE transactions already run one at a time.
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
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


def _check_quota(upcoming: int) -> None:
    """A patient holds at most MAX_ACTIVE_APPOINTMENTS_PER_PATIENT upcoming bookings."""
    limit = settings.MAX_ACTIVE_APPOINTMENTS_PER_PATIENT
    if upcoming >= limit:
        raise Conflict(TOO_MANY.format(limit=limit), extra={"limit": limit})


def _conflict_from(exc: IntegrityError) -> Conflict:
    """Name the rule a concurrent request broke (both databases' messages)."""
    text = str(exc)
    if "one_active_per_patient_time" in text or "appointment.patient_id" in text:
        return Conflict(PATIENT_BUSY, field="timeSlot")
    if "one_active_per_doctor_slot" in text or "appointment.doctor_id" in text:
        return Conflict(SLOT_TAKEN, field="timeSlot")
    raise exc


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
    _check_bookable(doctor, date, time_slot)
    try:
        with transaction.atomic():
            _check_quota(_lock_patient(patient))
            _check_free(doctor=doctor, patient=patient, day=date, time_slot=time_slot)
            appointment = Appointment.objects.create(
                patient=patient,
                doctor=doctor,
                date=date,
                time_slot=time_slot,
                reason=reason,
            )
            _emit(APPOINTMENT_BOOKED, appointment, traceparent=traceparent)
            audit_change(
                AuditEntry.Action.BOOKED, appointment, by=patient, role="patient"
            )
    except IntegrityError as exc:
        raise _conflict_from(exc) from None
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
            _check_bookable(appointment.doctor, date, time_slot)
            _lock_patient(appointment.patient)
            _check_free(
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
        raise _conflict_from(exc) from None
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
