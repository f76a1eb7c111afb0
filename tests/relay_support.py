"""Helpers for the relay tests: events to publish, a relay in a thread, order checks."""

import contextlib
import json
import threading
import uuid
from collections import defaultdict

from django.db import connection, transaction

from relay.events import Event, enqueue_many
from relay.models import OutboxEvent
from tests.kafka_utils import headers_of


def make_events(
    keys: list[str], per_key: int, *, aggregatetype: str = "appointment", size: int = 0
):
    """per_key events for each key, interleaved across keys the way real traffic is."""
    return [
        Event(
            type=f"appointment.step{n}",
            aggregatetype=aggregatetype,
            aggregateid=key,
            data={"appointmentId": key, "step": n, "pad": "x" * size},
            source="/healthcare/appointments",
        )
        for n in range(per_key)
        for key in keys
    ]


def enqueue_events(events: list[Event]) -> None:
    with transaction.atomic():
        enqueue_many(events)


def new_keys(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


@contextlib.contextmanager
def relay_in_thread(**kwargs):
    """A Relay running in a background thread of this process until the block ends."""
    from relay.worker import Relay

    relay = Relay(**kwargs)
    errors = []

    def run():
        try:
            relay.run()
        except BaseException as exc:  # surfaced by the test below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        relay.stop()
        thread.join(20)
        assert not thread.is_alive(), "relay thread did not stop"
        assert not errors, errors


def run_relay_once(**kwargs) -> int:
    """Drain what is pending with an in-process relay; returns how many it published."""
    from relay.worker import Relay

    return Relay(once=True, **kwargs).run()


def event_ids(records) -> list[str]:
    return [headers_of(r)["ce_id"] for r in records]


def assert_complete_and_ordered(records, rows=None) -> None:
    """Every outbox row is in the topic, and per key the first time each event
    appears follows the outbox order (a duplicate of an earlier event is harmless)."""
    rows = rows if rows is not None else list(OutboxEvent.objects.order_by("seq"))
    expected = defaultdict(list)
    for row in rows:
        expected[row.key].append(str(row.event_id))
    seen = defaultdict(list)
    for record in records:
        key, event_id = record.key().decode(), headers_of(record)["ce_id"]
        if event_id not in seen[key]:
            seen[key].append(event_id)
    missing = {
        k: set(v) - set(seen[k]) for k, v in expected.items() if set(v) - set(seen[k])
    }
    assert not missing, f"events missing from the topic: {missing}"
    disordered = [k for k, v in expected.items() if seen[k] != v]
    assert not disordered, f"keys out of order: {disordered[:5]}"


def payload_of(record) -> dict:
    return json.loads(record.value())
