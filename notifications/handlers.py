"""Turn an appointment event into notifications for the patient and the doctor.

Pure functions of the event: they never touch the database, so the consumer can
build a whole batch's notifications and write them in one transaction.
"""

import uuid
from dataclasses import dataclass

REQUIRED = ("appointmentId", "patientId", "doctorUserId", "doctorName", "date", "timeSlot")


class InvalidEvent(ValueError):
    """The event can never be processed as it is (bad data or an unknown type)."""


@dataclass(frozen=True)
class Planned:
    recipient_id: int
    message: str
    role: str  # "patient" or "doctor"


def _booked(d):
    return (
        f"Your appointment with {d['doctorName']} on {d['date']} at {d['timeSlot']} is booked.",
        f"New appointment on {d['date']} at {d['timeSlot']}.",
    )


def _rescheduled(d):
    old = f"{d.get('previousDate', '?')} at {d.get('previousTimeSlot', '?')}"
    return (
        f"Your appointment with {d['doctorName']} moved from {old} "
        f"to {d['date']} at {d['timeSlot']}.",
        f"An appointment moved from {old} to {d['date']} at {d['timeSlot']}.",
    )


def _cancelled(d):
    return (
        f"Your appointment with {d['doctorName']} on {d['date']} at {d['timeSlot']} "
        "was cancelled.",
        f"The appointment on {d['date']} at {d['timeSlot']} was cancelled.",
    )


def _completed(d):
    return (
        f"Your appointment with {d['doctorName']} on {d['date']} is complete. Thank you.",
        f"The appointment on {d['date']} at {d['timeSlot']} is marked completed.",
    )


def _no_show(d):
    return (
        f"You missed your appointment with {d['doctorName']} on {d['date']} at "
        f"{d['timeSlot']}. Please book a new one.",
        f"The patient did not attend the appointment on {d['date']} at {d['timeSlot']}.",
    )


MESSAGES = {
    "appointment.booked": _booked,
    "appointment.rescheduled": _rescheduled,
    "appointment.cancelled": _cancelled,
    "appointment.completed": _completed,
    "appointment.no_show": _no_show,
}


def plan_notifications(event_type: str, data) -> list[Planned]:
    """The notifications an event causes; raises InvalidEvent when it cannot be handled."""
    build = MESSAGES.get(event_type)
    if build is None:
        raise InvalidEvent(f"unknown event type {event_type!r}")
    if not isinstance(data, dict):
        raise InvalidEvent("event data is not a JSON object")
    missing = [k for k in REQUIRED if data.get(k) in (None, "")]
    if missing:
        raise InvalidEvent(f"event data lacks {', '.join(missing)}")
    try:
        uuid.UUID(str(data["appointmentId"]))
        patient_id = int(data["patientId"])
        doctor_user_id = int(data["doctorUserId"])
    except (ValueError, TypeError) as exc:
        raise InvalidEvent(f"event data has a malformed id: {exc}") from None
    patient_message, doctor_message = build(data)
    return [
        Planned(patient_id, patient_message, "patient"),
        Planned(doctor_user_id, doctor_message, "doctor"),
    ]
