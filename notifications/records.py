"""Kafka records in: read a CloudEvents record (dead letters: messaging.deadletter)."""

import json
import uuid
from datetime import UTC, datetime

from notifications.handlers import InvalidEvent, Planned, plan_notifications

REQUIRED_HEADERS = ("ce_id", "ce_type", "ce_specversion", "ce_source")


class ParsedEvent:
    """One good record: its event id, type, data and the notifications it causes."""

    __slots__ = ("msg", "event_id", "event_type", "data", "time", "planned")

    def __init__(
        self, msg, event_id: uuid.UUID, event_type: str, data: dict, time, planned
    ):
        self.msg = msg
        self.event_id = event_id
        self.event_type = event_type
        self.data = data
        self.time: datetime | None = time
        self.planned: list[Planned] = planned

    @property
    def appointment_id(self) -> str:
        return str(self.data["appointmentId"])


class DeadLetter:
    """A record that can never be processed, and why."""

    __slots__ = ("msg", "error")

    def __init__(self, msg, error: Exception):
        self.msg = msg
        self.error = error


def parse_record(msg) -> ParsedEvent:
    """Read a CloudEvents binary-mode record and plan its notifications.

    Raises InvalidEvent when the record is unusable, or whatever a handler raised.
    """
    headers = {}
    for name, value in msg.headers() or ():
        if name in headers:
            continue  # the first of repeated headers wins
        try:
            headers[name] = (
                value.decode() if isinstance(value, bytes) else (value or "")
            )
        except UnicodeDecodeError:
            raise InvalidEvent(f"header {name} is not UTF-8") from None
    missing = [h for h in REQUIRED_HEADERS if not headers.get(h)]
    if missing:
        raise InvalidEvent(f"missing CloudEvents headers: {', '.join(missing)}")
    try:
        event_id = uuid.UUID(headers["ce_id"])
    except ValueError:
        raise InvalidEvent("ce_id is not a UUID") from None
    try:
        data = json.loads(msg.value() or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"value is not JSON: {exc}") from None
    event_type = headers["ce_type"]
    planned = plan_notifications(event_type, data)
    return ParsedEvent(msg, event_id, event_type, data, _event_time(headers), planned)


def _event_time(headers: dict) -> datetime | None:
    """ce_time as an aware datetime, or None when absent or unreadable (it is optional)."""
    raw = headers.get("ce_time")
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
