"""The verdict: from the database, the load's record and an independent topic read.

Each invariant has an expected and a found count and the first appointments that
broke it. ``scope`` limits the topic checks on a broker that was wiped (Tansu): only
events created since the last wipe's replay point can still be on the topic.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from devtools.chaos.matching import first_deliveries, in_order, match_changes

FINAL = ("cancelled", "completed", "no_show")


@dataclass
class Invariant:
    name: str
    expected: int
    found: int
    ok: bool
    offenders: list = field(default_factory=list)
    note: str = ""


def _inv(name, expected, found, offenders=(), ok=None, note="") -> Invariant:
    offenders = sorted({str(o) for o in offenders})
    ok = (expected == found and not offenders) if ok is None else ok
    return Invariant(name, expected, found, ok, offenders[:5], note)


def changes_vs_events(ev) -> list[Invariant]:
    """Every committed change one event, nothing else one; final state = last event."""
    by_appointment = defaultdict(list)
    lost_bookings = {}
    for c in ev.changes:
        if c.appointment_id:
            by_appointment[c.appointment_id].append(c)
        elif c.outcome == "unknown":
            lost_bookings[(c.patient_id, c.doctor_id, c.day, c.slot)] = c
    confirmed = matched = extra = unknown_committed = 0
    broken, stale, after_end = set(), set(), set()
    for aid in sorted(set(by_appointment) | set(ev.events_of)):
        changes = sorted(by_appointment.get(aid, []), key=lambda c: c.seq)
        if not changes and aid in ev.appointments:  # booked, but the answer was lost
            a = ev.appointments[aid]
            lost = lost_bookings.get(
                (a["patient_id"], a["doctor_id"], a["date"], a["slot"])
            )
            changes = [lost] if lost else []
        events = ev.events_of.get(aid, [])
        m = match_changes(changes, [(e["kind"], e["date"], e["slot"]) for e in events])
        confirmed += m.confirmed
        matched += m.confirmed_matched
        extra += len(m.extra_events)
        unknown_committed += m.unknown_committed
        if m.confirmed != m.confirmed_matched or m.extra_events:
            broken.add(aid)
        if events and not _final_state_matches(ev.appointments.get(aid), events[-1]):
            stale.add(aid)
        if any(e["kind"] in FINAL for e in events[:-1]):
            after_end.add(aid)
    with_events = len(ev.events_of)
    ev.committed_changes = confirmed + unknown_committed
    ev.unknown_committed = unknown_committed
    return [
        _inv("committed_change_one_event", confirmed, matched, broken),
        _inv("no_event_without_change", 0, extra, broken),
        _inv("final_state_is_last_event", with_events, with_events - len(stale), stale),
        _inv("no_event_after_cancel", 0, len(after_end), after_end),
    ]


def _final_state_matches(row, last) -> bool:
    if row is None:
        return False
    return row["status"] == last["status"] and (
        last["status"] != "booked"
        or (row["date"], row["slot"]) == (last["date"], last["slot"])
    )


def inbox(ev) -> Invariant:
    ids = {e["event_id"] for e in ev.events}
    missing = ids - ev.inbox
    stray = ev.inbox - ids
    offenders = [ev.aggregate_of[i] for i in missing]
    found = len(ids & ev.inbox)
    return _inv("inbox_exactly_once", len(ids), found, offenders + sorted(stray))


def notifications(ev) -> list[Invariant]:
    """Once per event and recipient; per appointment and recipient in commit order."""
    expected = {}
    for e in ev.events:
        for user in (e["patient_id"], e["doctor_user_id"]):
            expected[(e["event_id"], user)] = e["aggregateid"]
    have = Counter((n["event_id"], n["recipient_id"]) for n in ev.notifications)
    missing = [aid for key, aid in expected.items() if have[key] != 1]
    stray = [k for k in have if k not in expected]
    once = _inv(
        "notification_once_per_event_recipient",
        len(expected),
        sum(1 for key in expected if have[key] == 1),
        missing + [f"stray {k}" for k in stray],
    )
    series = defaultdict(list)
    for n in sorted(ev.notifications, key=lambda n: n["id"]):
        series[(n["appointment_id"], n["recipient_id"])].append(n["event_id"])
    disorder = [aid for (aid, _), ids in series.items() if not in_order(ids, ev.rank)]
    ordered = _inv(
        "notification_order_is_commit_order",
        len(series),
        len(series) - len(disorder),
        disorder,
    )
    return [once, ordered]


def topic(ev) -> list[Invariant]:
    """At least once on the topic; marks point at the record; first deliveries in order."""
    scoped = [e for e in ev.events if ev.scope is None or e["created_at"] >= ev.scope]
    seen = {r.event_id for r in ev.records}
    at = {(r.partition, r.offset): r.event_id for r in ev.records}
    absent = [e["aggregateid"] for e in scoped if e["event_id"] not in seen]
    wrong_mark = [
        e["aggregateid"]
        for e in scoped
        if e["partition"] is None
        or at.get((e["partition"], e["offset"])) != e["event_id"]
    ]
    by_key = defaultdict(list)
    wanted = {e["event_id"] for e in scoped}
    for r in sorted(ev.records, key=lambda r: (r.partition, r.offset)):
        if r.event_id in wanted:
            by_key[r.key].append(r)
    disorder = [
        key
        for key, records in by_key.items()
        if len({r.partition for r in records}) > 1
        or not in_order(first_deliveries(records), ev.rank)
    ]
    n = len(scoped)
    return [
        _inv("on_topic_at_least_once", n, n - len(absent), absent, note=ev.scope_note),
        _inv(
            "mark_is_a_committed_record",
            n,
            n - len(wrong_mark),
            wrong_mark,
            note=ev.mark_note,
        ),
        _inv(
            "topic_order_is_commit_order",
            len(by_key),
            len(by_key) - len(disorder),
            disorder,
        ),
    ]


def dead_letters(ev) -> Invariant:
    return _inv("no_dead_letters", 0, len(ev.dead_letters), note=ev.scope_note)


def emails(ev) -> list[Invariant]:
    """Every delivery sent or pending; every one marked sent reached the sink."""
    total = len(ev.deliveries)
    alive = [d for d in ev.deliveries if d["status"] in ("sent", "pending")]
    failed = [d["appointment_id"] for d in ev.deliveries if d not in alive]
    sent = Counter(d["message"] for d in ev.deliveries if d["status"] == "sent")
    unsent = [m for m, n in sent.items() if ev.received[m] < n]
    expected_notes = len(ev.notifications)
    return [
        _inv("email_delivery_per_notification", expected_notes, total),
        _inv("email_sent_or_pending", total, len(alive), failed),
        _inv(
            "email_sent_was_received",
            sum(sent.values()),
            sum(min(n, ev.received[m]) for m, n in sent.items()),
            [m[0] for m in unsent],
        ),
    ]


def email_duplicates(ev) -> int:
    """Messages the sink got more often than there are deliveries for them."""
    wanted = Counter(d["message"] for d in ev.deliveries)
    return sum(max(0, n - wanted[m]) for m, n in ev.received.items())


def shutdown(ev) -> Invariant:
    codes = ev.exit_codes
    bad = [f"{name} exit {code}" for name, code in codes.items() if code != 0]
    return _inv("clean_shutdown_on_sigterm", len(codes), len(codes) - len(bad), bad)


def stalled_leaders(ev) -> Invariant:
    """Each stalled leader that was taken over noticed it after SIGCONT and stood down."""
    words = ("fenced", "leadership lost", "lease moved", "leadership connection lost")
    stalls = [s for s in ev.stalls if s["taken_over"]]
    deaf = [s["target"] for s in stalls if not any(w in s["log_after"] for w in words)]
    return _inv("stalled_leader_stood_down", len(stalls), len(stalls) - len(deaf), deaf)


def judge(ev) -> list[Invariant]:
    return [
        *changes_vs_events(ev),
        inbox(ev),
        *notifications(ev),
        *topic(ev),
        dead_letters(ev),
        *emails(ev),
        stalled_leaders(ev),
        shutdown(ev),
    ]
