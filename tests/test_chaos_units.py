"""Unit tests of the chaos verdict's pure rules (no processes: the short run proves the rest)."""

from collections import Counter
from itertools import pairwise
from types import SimpleNamespace

from devtools.chaos import verdict
from devtools.chaos.load import Change
from devtools.chaos.matching import first_deliveries, in_order, match_changes
from devtools.chaos.schedule import KINDS, plan
from devtools.chaos.topic import Record


def change(seq, kind, outcome="ok", day="2027-01-04", slot="10:00"):
    return Change(seq, kind, 1, 1, day, slot, outcome, 200, "a-1")


BOOK = ("booked", "2027-01-04", "10:00")
MOVE = ("rescheduled", "2027-01-05", "11:00")
CANCEL = ("cancelled", None, None)


def test_each_committed_change_needs_its_one_event_in_place():
    changes = [
        change(0, "booked"),
        change(1, "rescheduled", day="2027-01-05", slot="11:00"),
    ]
    assert match_changes(changes, [BOOK, MOVE]).confirmed_matched == 2
    swapped = match_changes(changes, [MOVE, BOOK])
    assert swapped.confirmed_matched < 2
    twice = match_changes(changes, [BOOK, MOVE, MOVE])
    assert twice.extra_events == [MOVE]


def test_a_rejected_change_must_have_no_event():
    changes = [change(0, "booked"), change(1, "cancelled", outcome="rejected")]
    assert match_changes(changes, [BOOK]).extra_events == []
    assert match_changes(changes, [BOOK, CANCEL]).extra_events == [CANCEL]


def test_a_change_whose_answer_was_lost_may_have_one_event_or_none():
    changes = [change(0, "booked"), change(1, "cancelled", outcome="unknown")]
    assert match_changes(changes, [BOOK]).unknown_committed == 0
    committed = match_changes(changes, [BOOK, CANCEL])
    assert (committed.unknown_committed, committed.extra_events) == (1, [])
    assert match_changes(changes, [BOOK, CANCEL, CANCEL]).extra_events == [CANCEL]


def test_changes_sent_together_may_commit_in_either_order():
    race = [
        change(0, "booked"),
        change(1, "rescheduled", day="2027-01-05", slot="11:00"),
        change(1, "cancelled"),
    ]
    assert match_changes(race, [BOOK, MOVE, CANCEL]).confirmed_matched == 3
    assert match_changes(race, [BOOK, CANCEL, MOVE]).confirmed_matched == 3


def test_first_deliveries_ignore_later_duplicates():
    records = [Record(0, i, "k", e) for i, e in enumerate(["a", "b", "a", "c", "b"])]
    assert first_deliveries(records) == ["a", "b", "c"]
    assert in_order(["a", "b", "c"], {"a": 1, "b": 2, "c": 3})
    assert not in_order(["b", "a"], {"a": 1, "b": 2})


def test_plan_is_seeded_and_has_every_kind_once_first():
    assert plan(7, 75) == plan(7, 75)
    assert plan(7, 75) != plan(8, 75)
    assert {p.kind for p in plan(7, 75)[: len(KINDS)]} == set(KINDS)
    long = plan(7, 300)
    assert len(long) >= 20
    assert all(a.at < b.at for a, b in pairwise(long))


MESSAGE = ("p-1@chaos.example", "Appointment booked", "Your appointment ...")


def evidence(**overrides):
    event = {
        "seq": 1,
        "event_id": "e1",
        "aggregateid": "a-1",
        "kind": "booked",
        "date": "2027-01-04",
        "slot": "10:00",
        "status": "booked",
        "patient_id": 1,
        "doctor_user_id": 2,
        "created_at": 0,
        "partition": 0,
        "offset": 0,
    }
    ev = SimpleNamespace(
        changes=[change(0, "booked")],
        events=[event],
        events_of={"a-1": [event]},
        aggregate_of={"e1": "a-1"},
        rank={"e1": 1},
        appointments={
            "a-1": {
                "status": "booked",
                "date": "2027-01-04",
                "slot": "10:00",
                "patient_id": 1,
                "doctor_id": 1,
            }
        },
        inbox={"e1"},
        notifications=[
            {"id": 1, "event_id": "e1", "appointment_id": "a-1", "recipient_id": 1},
            {"id": 2, "event_id": "e1", "appointment_id": "a-1", "recipient_id": 2},
        ],
        deliveries=[
            {"status": "sent", "appointment_id": "a-1", "message": MESSAGE},
            {"status": "pending", "appointment_id": "a-1", "message": MESSAGE},
        ],
        received=Counter({MESSAGE: 1}),
        exit_codes={"relay-1": 0},
        stalls=[],
        records=[Record(0, 0, "a-1", "e1")],
        dead_letters=[],
        scope=None,
        scope_note="",
        mark_note="",
    )
    for name, value in overrides.items():
        setattr(ev, name, value)
    return ev


def failed(ev) -> set[str]:
    return {i.name for i in verdict.judge(ev) if not i.ok}


def test_a_consistent_run_passes():
    assert failed(evidence()) == set()


def test_each_broken_promise_fails_its_invariant():
    assert failed(evidence(inbox=set())) == {"inbox_exactly_once"}
    assert "notification_once_per_event_recipient" in failed(evidence(notifications=[]))
    assert failed(evidence(records=[])) >= {"on_topic_at_least_once"}
    assert failed(evidence(dead_letters=[Record(0, 0, "a-1", "e1")])) == {
        "no_dead_letters"
    }
    assert failed(evidence(exit_codes={"relay-1": -9})) == {"clean_shutdown_on_sigterm"}
    moved = {"a-1": {**evidence().appointments["a-1"], "slot": "12:00"}}
    assert failed(evidence(appointments=moved)) == {"final_state_is_last_event"}
    assert "committed_change_one_event" in failed(evidence(events_of={}, events=[]))
    lost_mail = [{**d, "status": "failed"} for d in evidence().deliveries]
    assert failed(evidence(deliveries=lost_mail)) == {"email_sent_or_pending"}
    assert failed(evidence(received=Counter())) == {"email_sent_was_received"}
    assert verdict.email_duplicates(evidence(received=Counter({MESSAGE: 4}))) == 2
