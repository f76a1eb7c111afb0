"""The published event contract (contracts/events/*.json), checked on every emitted event.

Loaded for every test by pytest.ini (``-p tests.event_contract``): an autouse fixture
validates each event the appointment services build against its type's schema, so a
service that emits data outside the contract fails the test that made it emit.
"""

import functools
import json
from pathlib import Path

import jsonschema
import pytest

CONTRACTS = Path(__file__).resolve().parent.parent / "contracts" / "events"


@functools.cache
def validator(event_type: str, version: int = 1) -> jsonschema.Draft202012Validator:
    schema = json.loads((CONTRACTS / f"{event_type}.v{version}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def versions() -> list[tuple[str, int]]:
    """Every (event type, version) published in contracts/events."""
    found = []
    for path in sorted(CONTRACTS.glob("*.v*.json")):
        event_type, _, version = path.name.removesuffix(".json").rpartition(".v")
        found.append((event_type, int(version)))
    return found


def validate_event(event_type: str, data: dict, version: int = 1) -> None:
    """Raise jsonschema.ValidationError when ``data`` breaks its type's contract."""
    validator(event_type, version).validate(data)


@pytest.fixture(autouse=True)
def _emitted_events_match_their_contract(monkeypatch):
    from appointments import events, services

    build = events.appointment_event

    def checked(*args, **kwargs):
        event = build(*args, **kwargs)
        validate_event(event.type, event.data)
        assert "reason" not in event.data, "free text must not reach Kafka"
        return event

    monkeypatch.setattr(services, "appointment_event", checked)
