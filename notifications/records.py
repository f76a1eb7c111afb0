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
    headers = _headers(msg)
    missing = [h for h in REQUIRED_HEADERS if not headers.get(h)]
    if missing:
        raise InvalidEvent(f"missing CloudEvents headers: {', '.join(missing)}")
    try:
        event_id = uuid.UUID(headers["ce_id"])
    except ValueError:
        raise InvalidEvent("ce_id is not a UUID") from None
    data = _json(msg.value())
    event_type = headers["ce_type"]
    planned = plan_notifications(event_type, data)
    return ParsedEvent(msg, event_id, event_type, data, _event_time(headers), planned)


_READ_HEADERS = (*REQUIRED_HEADERS, "ce_time")


def _headers(msg) -> dict[str, str]:
    """The headers the consumer reads, as text; the first of repeated ones wins."""
    raw = dict(reversed(msg.headers() or ()))
    headers = {}
    for name in _READ_HEADERS:
        value = raw.get(name)
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                raise InvalidEvent(f"header {name} is not UTF-8") from None
        headers[name] = value or ""
    return headers


# JSON text is UTF-8 (RFC 8259): decoding it ourselves skips json.loads' guessing
# of the encoding, and raw_decode its wrapper.
_raw_decode = json.JSONDecoder().raw_decode


def _json(value):
    try:
        text = (value or b"").decode().strip()
        data, end = _raw_decode(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"value is not JSON: {exc}") from None
    if end != len(text):
        raise InvalidEvent(f"value is not JSON: extra data at char {end}")
    return data


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
