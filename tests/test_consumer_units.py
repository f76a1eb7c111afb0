"""Pure logic of the consumer: parsing, planning, the error policy, reset targets."""

from datetime import UTC, datetime

import pytest
from django.db import DataError, IntegrityError, InterfaceError, OperationalError

from messaging.deadletter import dead_letter_headers, original_headers
from messaging.reset import parse_reset_target
from notifications.consumer import Decision, ErrorPolicy
from notifications.handlers import InvalidEvent, plan_notifications
from notifications.records import parse_record
from tests.consumer_kit import Record, event_record


def record(**changes) -> Record:
    r = event_record(patient_id=1, doctor_user_id=2)
    r.update(changes)
    return Record(r, offset=7)


def test_a_good_record_is_parsed_and_planned_for_patient_and_doctor():
    event = parse_record(record())
    assert event.event_type == "appointment.booked"
    assert [(p.recipient_id, p.role) for p in event.planned] == [
        (1, "patient"),
        (2, "doctor"),
    ]
    assert event.planned[0].message == (
        "Your appointment with Dr. Smith on 2030-05-06 at 10:00 is booked."
    )
    assert event.time is not None and event.time.tzinfo is not None


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"value": b"{nope"}, "value is not JSON"),
        ({"value": b"[1, 2]"}, "event data is not a JSON object"),
        (
            {"headers": [("ce_type", b"appointment.booked")]},
            "missing CloudEvents headers",
        ),
        (
            {
                "headers": [
                    ("ce_id", b"42"),
                    ("ce_type", b"x"),
                    ("ce_specversion", b"1.0"),
                    ("ce_source", b"/s"),
                ]
            },
            "ce_id is not a UUID",
        ),
        ({"headers": [("ce_id", b"\xff")]}, "header ce_id is not UTF-8"),
    ],
)
def test_unusable_records_raise_invalid_event(changes, message):
    with pytest.raises(InvalidEvent, match=message):
        parse_record(record(**changes))


def test_planning_rejects_unknown_types_missing_fields_and_malformed_ids():
    data = {
        "appointmentId": "0b7d4a8e-9f4e-4a55-8f1e-2a3c9b1d7e22",
        "patientId": 1,
        "doctorUserId": 2,
        "doctorName": "Dr. S",
        "date": "2030-05-06",
        "timeSlot": "10:00",
    }
    with pytest.raises(InvalidEvent, match="unknown event type 'appointment.lost'"):
        plan_notifications("appointment.lost", data)
    with pytest.raises(InvalidEvent, match="lacks doctorName"):
        plan_notifications("appointment.booked", {**data, "doctorName": ""})
    with pytest.raises(InvalidEvent, match="malformed id"):
        plan_notifications("appointment.booked", {**data, "appointmentId": "A-1"})
    # a handler error is not an InvalidEvent: the consumer dead-letters it all the same
    with pytest.raises(ValueError, match="month must be in 1..12"):
        plan_notifications("appointment.booked", {**data, "date": "2030-13-01"})
    moved = plan_notifications(
        "appointment.rescheduled",
        {**data, "previousDate": "2030-05-03", "previousTimeSlot": "09:30"},
    )
    assert "moved from 2030-05-03 at 09:30 to 2030-05-06 at 10:00" in moved[0].message


def test_error_policy_retries_database_outages_and_dead_letters_bad_records():
    assert (
        ErrorPolicy.decide(OperationalError("server closed the connection"))
        is Decision.RETRY
    )
    assert (
        ErrorPolicy.decide(InterfaceError("connection already closed"))
        is Decision.RETRY
    )
    assert (
        ErrorPolicy.decide(IntegrityError("violates foreign key"))
        is Decision.DEAD_LETTER
    )
    assert ErrorPolicy.decide(DataError("cannot contain NUL")) is Decision.DEAD_LETTER
    assert ErrorPolicy.decide(KeyError("doctorName")) is Decision.DEAD_LETTER
    assert [ErrorPolicy.backoff(n) for n in (1, 2, 3)] == [0.2, 0.4, 0.8]
    assert ErrorPolicy.backoff(50) == 30.0


def test_dead_letter_headers_say_where_the_record_came_from_and_why():
    r = record()
    r.topic = lambda: "appointments"
    r.partition = lambda: 2
    headers = dead_letter_headers(r, InvalidEvent("value is not JSON"))
    extra = dict(headers[len(r.headers()) :])
    assert headers[: len(r.headers())] == r.headers()
    assert extra["dlq_error_class"] == "InvalidEvent"
    assert extra["dlq_error_message"] == "value is not JSON"
    assert (extra["dlq_original_topic"], extra["dlq_original_partition"]) == (
        "appointments",
        "2",
    )
    assert extra["dlq_original_offset"] == "7"
    assert datetime.fromisoformat(extra["dlq_time"]).tzinfo is not None
    assert original_headers(headers) == r.headers()


def test_reset_targets_are_earliest_latest_or_a_point_in_time(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    assert parse_reset_target("EARLIEST").kind == "earliest"
    assert parse_reset_target("latest").kind == "latest"
    utc = parse_reset_target("2026-05-04T09:30:00Z")
    assert utc.timestamp_ms == int(
        datetime(2026, 5, 4, 9, 30, tzinfo=UTC).timestamp() * 1000
    )
    # without an offset, the time is read in TIME_ZONE (Berlin is UTC+2 in May)
    assert parse_reset_target("2026-05-04T11:30:00").timestamp_ms == utc.timestamp_ms
    with pytest.raises(ValueError, match="is not 'earliest', 'latest' or an ISO 8601"):
        parse_reset_target("last tuesday")
