"""Turn an appointment event into notifications for the patient and the doctor.

Pure functions of the event: they never touch the database, so the consumer can
build a whole batch's notifications and write them in one transaction. They read
only the keys below, so events written before ``reason`` left the data (issue 12)
are handled like new ones (contracts/events/, tests/test_event_contract.py).
"""

import functools
import re
import uuid
from datetime import date, time
from typing import NamedTuple

REQUIRED = (
    "appointmentId",
    "patientId",
    "doctorUserId",
    "doctorName",
    "date",
    "timeSlot",
)


class InvalidEvent(ValueError):
    """The event can never be processed as it is (bad data or an unknown type)."""


class Planned(NamedTuple):
    recipient_id: int
    message: str
    role: str  # "patient" or "doctor"


# The canonical form of a UUID: checked by a regular expression, several times
# cheaper than building a uuid.UUID, which only the other forms still need.
_CANONICAL_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def _when(d, date_key="date", slot_key="timeSlot") -> str:
    """'2026-05-05 at 10:00'; raises ValueError on a date or time that does not exist."""
    return _day_at(d[date_key], d[slot_key])


@functools.lru_cache(maxsize=4096)
def _day_at(day_text, slot_text) -> str:
    """A clinic's events share a few thousand days and slots: each is read once."""
    day = date.fromisoformat(day_text)
    slot = time.fromisoformat(slot_text)
    return f"{day.isoformat()} at {slot.hour:02d}:{slot.minute:02d}"


def _check_uuid(value) -> None:
    """Raise ValueError unless ``value`` reads as a UUID."""
    if not (isinstance(value, str) and _CANONICAL_UUID.fullmatch(value)):
        uuid.UUID(str(value))


def _booked(d):
    when = _when(d)
    return (
        f"Your appointment with {d['doctorName']} on {when} is booked.",
        f"New appointment on {when}.",
    )


def _rescheduled(d):
    old = _when(d, "previousDate", "previousTimeSlot") if d.get("previousDate") else "?"
    when = _when(d)
    return (
        f"Your appointment with {d['doctorName']} moved from {old} to {when}.",
        f"An appointment moved from {old} to {when}.",
    )


def _cancelled(d):
    when = _when(d)
    return (
        f"Your appointment with {d['doctorName']} on {when} was cancelled.",
        f"The appointment on {when} was cancelled.",
    )


def _completed(d):
    when = _when(d)
    return (
        f"Your appointment with {d['doctorName']} on {when} is complete. Thank you.",
        f"The appointment on {when} is marked completed.",
    )


def _no_show(d):
    when = _when(d)
    return (
        f"You missed your appointment with {d['doctorName']} on {when}. "
        "Please book a new one.",
        f"The patient did not attend the appointment on {when}.",
    )


MESSAGES = {
    "appointment.booked": _booked,
    "appointment.rescheduled": _rescheduled,
    "appointment.cancelled": _cancelled,
    "appointment.completed": _completed,
    "appointment.no_show": _no_show,
}

SUBJECTS = {
    "appointment.booked": "Appointment booked",
    "appointment.rescheduled": "Appointment moved",
    "appointment.cancelled": "Appointment cancelled",
    "appointment.completed": "Appointment completed",
    "appointment.no_show": "Missed appointment",
}


def plan_notifications(event_type: str, data) -> list[Planned]:
    """The notifications an event causes; raises InvalidEvent when it cannot be handled.

    A handler may raise another error for data that passed these checks (a date
    that does not exist, say); the consumer dead-letters that record too.
    """
    build = MESSAGES.get(event_type)
    if build is None:
        raise InvalidEvent(f"unknown event type {event_type!r}")
    if not isinstance(data, dict):
        raise InvalidEvent("event data is not a JSON object")
    missing = [k for k in REQUIRED if data.get(k) in (None, "")]
    if missing:
        raise InvalidEvent(f"event data lacks {', '.join(missing)}")
    try:
        _check_uuid(data["appointmentId"])
        patient_id = int(data["patientId"])
        doctor_user_id = int(data["doctorUserId"])
    except (ValueError, TypeError) as exc:
        raise InvalidEvent(f"event data has a malformed id: {exc}") from None
    patient_message, doctor_message = build(data)
    return [
        Planned(patient_id, patient_message, "patient"),
        Planned(doctor_user_id, doctor_message, "doctor"),
    ]


def email_subject(event_type: str) -> str:
    return SUBJECTS.get(event_type, "Your appointment")
