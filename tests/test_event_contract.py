"""The event contract: published schemas, what the services emit, what readers accept."""

import uuid
from datetime import time

import jsonschema
import pytest

from appointments import services
from appointments.events import appointment_data
from notifications.handlers import plan_notifications
from relay.models import OutboxEvent
from tests.appointment_factories import next_weekday, past_appointment
from tests.event_contract import validate_event, versions

pytestmark = pytest.mark.django_db

EVENT_TYPES = {
    "appointment.booked",
    "appointment.rescheduled",
    "appointment.cancelled",
    "appointment.completed",
    "appointment.no_show",
}


def test_every_event_type_has_a_published_schema():
    assert {event_type for event_type, _ in versions()} == EVENT_TYPES


def test_every_use_case_emits_data_its_schema_accepts(patient, doctor, settings):
    day = next_weekday()
    one = services.appointment_book(
        patient=patient, doctor=doctor, date=day, time_slot=time(9), reason="Pain"
    )
    services.appointment_reschedule(
        appointment=one, by=patient, date=day, time_slot=time(10)
    )
    services.appointment_cancel(appointment=one, by=doctor.user)
    # completing and no-show need a slot that has started
    two = past_appointment(patient=patient, doctor=doctor, at=time(10))
    three = past_appointment(patient=patient, doctor=doctor, at=time(11))
    services.appointment_complete(appointment=two, by=doctor.user)
    services.appointment_mark_no_show(appointment=three, by=doctor.user)
    rows = list(OutboxEvent.objects.order_by("seq"))
    assert {row.type for row in rows} == EVENT_TYPES
    for row in rows:
        validate_event(row.type, row.payload)
        assert "reason" not in row.payload


@pytest.fixture
def event_data(patient, doctor):
    booked = services.appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=time(9)
    )
    return appointment_data(booked)


EXTRA = {
    "appointment.rescheduled": {
        "previousDate": "2026-01-05",
        "previousTimeSlot": "09:00",
        "rescheduledBy": "patient",
    },
    "appointment.cancelled": {"cancelledBy": "doctor"},
}


@pytest.mark.parametrize("event_type, version", versions())
@pytest.mark.parametrize("written", ["now", "before issue 12, with reason"])
def test_the_consumer_accepts_each_version_still_in_retention(
    event_data, event_type, version, written
):
    data = event_data | EXTRA.get(event_type, {})
    if written != "now":
        data["reason"] = "Check-up"  # what producers wrote before the change
    validate_event(event_type, data, version)
    planned = plan_notifications(event_type, data)
    assert [p.role for p in planned] == ["patient", "doctor"]
    assert all("Check-up" not in p.message for p in planned)


def test_the_schema_refuses_data_outside_the_contract(event_data):
    with pytest.raises(jsonschema.ValidationError):
        validate_event("appointment.booked", event_data | {"notes": "free text"})
    with pytest.raises(jsonschema.ValidationError):
        validate_event("appointment.booked", event_data | {"appointmentId": "nope"})
    with pytest.raises(jsonschema.ValidationError):
        validate_event("appointment.cancelled", event_data)  # lacks cancelledBy
    assert uuid.UUID(event_data["appointmentId"])
