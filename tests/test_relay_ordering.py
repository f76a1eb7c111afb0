"""One appointment's events get outbox ids in commit order when the service locks its row."""

import threading
import time
from datetime import time as clock

import pytest
from django.db import connection, transaction

from appointments.events import appointment_event
from appointments.models import Appointment
from appointments.services import appointment_book
from relay.events import enqueue
from relay.models import OutboxEvent
from tests.test_flow import next_weekday

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]


def change(
    appointment_id, event_type: str, *, lock: bool, hold: float, committed: list
):
    """A service-shaped change: (lock the row,) enqueue its event, hold, commit."""
    try:
        with transaction.atomic():
            rows = Appointment.objects.select_related("doctor")
            if lock:
                rows = rows.select_for_update(of=("self",))
            enqueue(appointment_event(event_type, rows.get(pk=appointment_id)))
            time.sleep(hold)
        committed.append(event_type)
    finally:
        connection.close()


def two_concurrent_changes(appointment, *, lock: bool) -> tuple[list, list]:
    committed = []
    slow = threading.Thread(
        target=change,
        args=(appointment.id, "appointment.rescheduled"),
        kwargs={"lock": lock, "hold": 0.6, "committed": committed},
    )
    fast = threading.Thread(
        target=change,
        args=(appointment.id, "appointment.cancelled"),
        kwargs={"lock": lock, "hold": 0, "committed": committed},
    )
    slow.start()
    time.sleep(0.2)  # the slow transaction has enqueued and holds on
    fast.start()
    slow.join()
    fast.join()
    by_seq = list(
        OutboxEvent.objects.filter(key=str(appointment.id))
        .order_by("seq")
        .values_list("type", flat=True)
    )
    return committed, by_seq[1:]  # after appointment.booked


@pytest.fixture
def appointment(patient, doctor):
    return appointment_book(
        patient=patient, doctor=doctor, date=next_weekday(), time_slot=clock(10)
    )


def test_with_the_row_locked_ids_follow_commit_order(appointment):
    committed, by_seq = two_concurrent_changes(appointment, lock=True)
    assert committed == ["appointment.rescheduled", "appointment.cancelled"]
    assert by_seq == committed


def test_without_the_row_lock_ids_can_contradict_commit_order(appointment):
    """Why the services lock: a later commit can hold an earlier id."""
    committed, by_seq = two_concurrent_changes(appointment, lock=False)
    assert committed == ["appointment.cancelled", "appointment.rescheduled"]
    assert by_seq == ["appointment.rescheduled", "appointment.cancelled"]
