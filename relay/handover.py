"""Hand the outbox from the polling relay to Debezium and back, without a gap.

poll -> cdc: ``cdc_setup()`` creates the slot first; the polling relay keeps
running until every row that committed before the slot is published
(``wait_polled_before_slot``); then run_relay stops and the connector starts on
the slot without a snapshot. Rows that committed after the slot was created and
that the relay still published reach Kafka twice (the inbox skips them).

cdc -> poll: stop the connector (it commits its position to the slot), then
``handover_to_poll()`` marks every pending row published except those the slot
still holds, i.e. the ones the connector has not delivered; run_relay sends those.
"""

import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from relay import pgoutput
from relay.cdc import CDCError, outbox_table, require_logical_wal, slot_status
from relay.models import OutboxEvent


@dataclass(frozen=True)
class Handover:
    marked: int
    left: int


def undelivered_event_ids(slot: str, publication: str) -> list[str]:
    """Event ids of the outbox inserts the slot holds past the connector's position."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, "
            "'proto_version', '1', 'publication_names', %s)",
            [slot, publication],
        )
        messages = [bytes(row[0]) for row in cursor.fetchall()]
    return [i for i in pgoutput.inserted(messages, outbox_table(), "id") if i]


def handover_to_poll() -> Handover:
    """Mark what the (stopped) connector delivered; leave the rest to run_relay."""
    require_logical_wal()
    status = slot_status()
    if status is None:
        raise CDCError("no replication slot: nothing was captured, nothing to mark")
    if status["active"]:
        raise CDCError(
            f"slot {status['slot']} is in use (pid {status['active_pid']}): "
            "stop the connector first, so that its position is final"
        )
    with transaction.atomic():
        with connection.cursor() as cursor:
            # One snapshot for the peek and the update: a row visible to the update
            # committed before the peek read the WAL, so the peek has it if the
            # connector did not deliver it.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        left = undelivered_event_ids(status["slot"], settings.CDC["PUBLICATION"])
        marked = (
            OutboxEvent.objects.pending()
            .exclude(event_id__in=left)
            .update(published_at=timezone.now(), last_error="", next_attempt_at=None)
        )
    return Handover(marked=marked, left=len(left))


def wait_polled_before_slot(timeout: float = 300, interval: float = 0.2) -> int:
    """Wait until run_relay has published every row committed before the slot.

    Every row committed before the slot was created is visible now, with a seq
    at most the current maximum; rows with a higher seq commit later, so the
    slot has them. Returns that seq. Raises CDCError when the relay does not
    drain them in time (is run_relay running?).
    """
    if slot_status() is None:
        raise CDCError("create the slot first (`outbox_cdc setup`)")
    last = OutboxEvent.objects.aggregate(m=Max("seq"))["m"] or 0
    deadline = time.monotonic() + timeout
    while OutboxEvent.objects.pending().filter(seq__lte=last).exists():
        if time.monotonic() > deadline:
            raise CDCError(
                f"rows up to seq {last} are still pending after {timeout:.0f} s: "
                "run_relay must run until they are published"
            )
        time.sleep(interval)
    return last
