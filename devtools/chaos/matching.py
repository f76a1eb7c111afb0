"""Pure rules of the verdict: which outbox events account for which requests.

The load generator knows every request it sent, in order per appointment, and its
outcome. A change answered 2xx committed: it needs exactly one event, in its place.
A change answered 4xx did not: it must have none. A change whose answer was lost
(5xx, timeout, dropped connection) may have committed or not: it may have at most
one event, in its place, and the appointment's final state then says which.
"""

from dataclasses import dataclass, field
from itertools import pairwise


@dataclass
class Match:
    confirmed: int = 0  # 2xx changes
    confirmed_matched: int = 0  # ... with their one event in place
    unknown_committed: int = 0  # lost answers whose change did commit
    extra_events: list = field(default_factory=list)  # events no request accounts for


def _same(change, event) -> bool:
    kind, day, slot = event
    if change.kind != kind:
        return False
    return kind == "cancelled" or (change.day == day and change.slot == slot)


def match_changes(changes: list, events: list[tuple[str, str, str]]) -> Match:
    """Walk one appointment's requests (in sending order) against its events (seq order).

    ``events`` are (kind, date, timeSlot) of the outbox rows; ``changes`` have
    ``seq``, ``kind``, ``day``, ``slot`` and ``outcome`` (ok | rejected | unknown).
    Changes with the same ``seq`` were sent at once: their events may come in either
    order.
    """
    result = Match()
    groups: dict[int, list] = {}
    for change in changes:
        groups.setdefault(change.seq, []).append(change)
    i = 0
    for seq in sorted(groups):
        waiting = [c for c in groups[seq] if c.outcome != "rejected"]
        result.confirmed += sum(1 for c in waiting if c.outcome == "ok")
        while i < len(events):
            hit = next((c for c in waiting if _same(c, events[i])), None)
            if hit is None:
                break
            waiting.remove(hit)
            i += 1
            if hit.outcome == "ok":
                result.confirmed_matched += 1
            else:
                result.unknown_committed += 1
    result.extra_events = events[i:]
    return result


def first_deliveries(records: list) -> list[str]:
    """Event ids in the order of their first record (records in log order)."""
    seen, order = set(), []
    for r in records:
        if r.event_id not in seen:
            seen.add(r.event_id)
            order.append(r.event_id)
    return order


def in_order(ids: list, rank: dict) -> bool:
    """Whether ``ids`` are in increasing ``rank`` (commit order)."""
    ranks = [rank[i] for i in ids]
    return all(a < b for a, b in pairwise(ranks))
