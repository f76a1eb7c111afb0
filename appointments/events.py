"""Appointment events: their types and the data each carries (DESIGN.md section 5)."""

from relay.events import Event

SOURCE = "/healthcare/appointments"
AGGREGATE_TYPE = "appointment"

APPOINTMENT_BOOKED = "appointment.booked"
APPOINTMENT_RESCHEDULED = "appointment.rescheduled"
APPOINTMENT_CANCELLED = "appointment.cancelled"
APPOINTMENT_COMPLETED = "appointment.completed"
APPOINTMENT_NO_SHOW = "appointment.no_show"


def appointment_data(appointment) -> dict:
    """The event data: ids and the minimum the notifications need (health data).

    No free text typed by a person: the booking's ``reason`` stays in the database.
    """
    doctor = appointment.doctor
    return {
        "appointmentId": str(appointment.id),
        "patientId": appointment.patient_id,
        "doctorId": doctor.id,
        "doctorUserId": doctor.user_id,
        "doctorName": doctor.name,
        "date": appointment.date.isoformat(),
        "timeSlot": appointment.time_slot.strftime("%H:%M"),
        "status": appointment.status,
    }


def appointment_event(
    event_type: str, appointment, *, extra: dict | None = None, traceparent: str = ""
) -> Event:
    return Event(
        type=event_type,
        aggregatetype=AGGREGATE_TYPE,
        aggregateid=str(appointment.id),
        data=appointment_data(appointment) | (extra or {}),
        source=SOURCE,
        subject=str(appointment.id),
        traceparent=traceparent,
    )
