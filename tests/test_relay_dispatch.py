"""The dispatch rules on their own: no broker, no database, time passed in."""

import pytest

from relay.dispatch import BatchRouting, ClaimStart, DispatchRules
from relay.store import ClaimedRow


def row(seq: int, key: str, *, bucket: int = 0, retry_in: float | None = None):
    return ClaimedRow(
        seq, bucket, "appointments", key, "{}", "{}", 0, retry_in, f"id-{seq}"
    )


def seqs(rows) -> list[int]:
    return [r.seq for r in rows]


@pytest.fixture
def rules():
    return DispatchRules(batch_size=10, max_backoff=5)


@pytest.fixture
def busy(rules, monkeypatch):
    """Rules that walk with a cursor, as under a large backlog."""
    monkeypatch.setattr(rules, "claim_from_oldest_below", 0)
    return rules


class Table:
    """Pending rows in id order, claimed by pages like the store does."""

    def __init__(self, rows):
        self.rows = rows
        self.claims: list[tuple[int, int]] = []

    def claim(self, *, after: int, limit: int):
        self.claims.append((after, limit))
        return [r for r in self.rows if r.seq > after][:limit]

    def pending_before(self, *, before: int, limit: int):
        return [
            (r.seq, r.key) for r in self.rows if r.seq <= before and r.retry_in is None
        ][:limit]


def test_under_light_load_every_claim_starts_at_the_oldest_row_with_room_for_in_flight(
    rules,
):
    rules.dispatched(0, [1, 2, 3])
    rules.admit([row(7, "a")], now=0)
    assert rules.claim_start(now=0) == ClaimStart(after=0, limit=13, look_back=False)


def test_rows_in_flight_are_not_dispatched_twice(rules):
    rules.dispatched(0, [1, 2])
    assert seqs(rules.admit([row(1, "a"), row(2, "b"), row(3, "c")], now=0)) == [3]


def test_a_backing_off_row_holds_its_key_and_later_rows_of_the_key_wait(rules):
    page = [row(1, "a", retry_in=2.0), row(2, "a"), row(3, "b")]
    assert seqs(rules.admit(page, now=100)) == [3]
    assert rules.held == {"a": 102.0}
    assert seqs(rules.admit([row(2, "a"), row(4, "b")], now=101.9)) == [4]


def test_a_hold_that_ran_out_is_released_and_the_key_flows_again(rules):
    rules.hold("a", 10.0)
    assert seqs(rules.admit([row(5, "a")], now=10.5)) == [5]
    assert "a" not in rules.held


def test_a_key_failing_while_its_later_rows_are_claimed_waits_for_its_backoff(rules):
    first, later, other = row(1, "a"), row(2, "a"), row(3, "b")
    assert seqs(rules.admit([first, later, other], now=0)) == [1, 2, 3]
    rules.dispatched(0, [1, 2, 3])
    # Event 1 fails its first attempt at t=50: its transaction's rows come back.
    rules.release(0, [1, 2, 3])
    rules.hold_after_failure("a", 1, now=50)
    rules.restart_from_oldest()
    assert seqs(rules.admit([first, later, other], now=50.2)) == [3]
    assert seqs(rules.admit([first, later], now=50.5)) == [1, 2], (
        "0.5 s later it is due"
    )


def test_failed_attempts_back_off_exponentially_up_to_the_cap(rules):
    holds = []
    for attempt in range(1, 6):
        rules.hold_after_failure("a", attempt, now=0)
        holds.append(rules.held["a"])
    assert holds == [0.5, 1, 2, 4, 5]


def test_within_a_batch_a_failed_key_sends_none_of_its_later_rows():
    routing = BatchRouting(shard_count=2)
    assert routing.shard_for(row(1, "a", bucket=3)) == 1
    routing.key_failed("a")
    assert routing.shard_for(row(2, "a", bucket=3)) is None
    assert routing.shard_for(row(3, "b", bucket=3)) == 1


def test_within_a_batch_a_failed_shard_sends_nothing_more():
    routing = BatchRouting(shard_count=4)
    routing.shard_failed(2, "broker down")
    assert routing.shard_for(row(1, "a", bucket=6)) is None
    assert routing.shard_for(row(2, "b", bucket=5)) == 1
    assert routing.failed_shards == {2: "broker down"}


def test_a_busy_relay_claims_forward_from_its_cursor(busy):
    busy.admit([row(1, "a"), row(2, "b")], now=0)
    busy.dispatched(0, [1, 2])
    assert busy.claim_start(now=0) == ClaimStart(after=2, limit=10, look_back=True)
    assert busy.claim_start(now=0.5) == ClaimStart(after=2, limit=10, look_back=False)


def test_a_busy_relay_looks_back_once_per_interval(busy):
    assert busy.claim_start(now=0).look_back
    assert not busy.claim_start(now=0.9).look_back
    assert busy.claim_start(now=1.0).look_back


def test_a_row_committed_late_behind_the_cursor_is_found_by_the_look_back(busy):
    busy.admit([row(5, "a"), row(6, "b")], now=0)
    busy.dispatched(0, [5, 6])
    # Row 3 committed after rows 5 and 6 were claimed: it is behind the cursor.
    passed = [(3, "c"), (5, "a"), (6, "b")]
    assert busy.resume_point(passed, after=6, now=0) == 2
    assert busy.resume_point([(5, "a"), (6, "b")], after=6, now=0) == 6


def test_the_look_back_skips_rows_whose_key_is_still_held(busy):
    busy.hold("c", 10.0)
    assert busy.resume_point([(3, "c"), (4, "d")], after=9, now=5) == 3
    assert busy.resume_point([(3, "c")], after=9, now=10) == 2


def test_a_failure_sends_the_next_claim_back_to_the_oldest_row(busy):
    busy.admit([row(40, "a")], now=0)
    busy.claim_start(now=0)  # spends the look-back
    assert busy.claim_start(now=0.1).after == 40
    busy.restart_from_oldest()
    assert busy.claim_start(now=0.2).after == 0


def test_release_after_commit_frees_the_rows_and_the_shard(rules):
    rules.dispatched(1, [1, 2, 3])
    rules.dispatched(2, [4])
    assert rules.shard_in_flight(1) == 3 and not rules.idle()
    rules.release(1, [1, 2, 3])
    assert rules.shard_in_flight(1) == 0 and rules.shard_in_flight(2) == 1
    assert seqs(rules.admit([row(1, "a"), row(4, "b")], now=0)) == [1]
    rules.release(2, [4])
    assert rules.idle()


def test_too_much_in_flight_stops_claiming_until_the_marker_catches_up(rules):
    rules.dispatched(0, list(range(39)))
    assert not rules.full()
    rules.dispatched(0, [39])
    assert rules.full()
    rules.release(0, [0])
    assert not rules.full()


def test_next_rows_pages_past_rows_that_may_not_go(busy):
    busy.dispatched(0, list(range(1, 11)))
    table = Table([row(n, f"k{n}") for n in range(1, 16)])
    busy.claim_start(now=0)  # spends the look-back
    ready = busy.next_rows(
        claim=table.claim, pending_before=table.pending_before, now=0.1
    )
    assert seqs(ready) == [11, 12, 13, 14, 15]
    assert table.claims == [(0, 10), (10, 10)]
    assert busy.cursor == 15


def test_next_rows_returns_nothing_when_the_table_is_drained(rules):
    table = Table([])
    assert (
        rules.next_rows(claim=table.claim, pending_before=table.pending_before, now=0)
        == []
    )
    assert table.claims == [(0, 10)]


def test_next_rows_goes_back_for_a_late_row_when_it_looks_back(busy):
    table = Table([row(n, f"k{n}") for n in range(1, 6)])
    busy.admit([row(9, "x")], now=0)  # the cursor passed rows 1..5 (committed late)
    ready = busy.next_rows(
        claim=table.claim, pending_before=table.pending_before, now=0
    )
    assert seqs(ready) == [1, 2, 3, 4, 5]
    assert table.claims == [(0, 10)]


def test_expired_holds_are_swept_once_there_are_many(rules, monkeypatch):
    monkeypatch.setattr(rules, "sweep_held_above", 2)
    for key, until in (("a", 1.0), ("b", 2.0), ("c", 9.0)):
        rules.hold(key, until)
    rules.claim_start(now=5)
    assert rules.held == {"c": 9.0}


def test_a_failed_event_is_held_for_its_backoff_and_logged_with_its_event_id(
    rules, caplog
):
    import time

    from confluent_kafka import KafkaError

    from healthcare.logging import ContextFilter
    from relay.outcomes import BatchOutcomes

    class NotLed:  # the shard was lost meanwhile: nothing is recorded in a database
        def epoch(self, shard):
            return None

    outcomes = BatchOutcomes(rules=rules, shards=NotLed(), broker=None, store=None)
    caplog.handler.addFilter(ContextFilter())
    failed = row(7, "a")._replace(attempts=2)
    before = time.monotonic()
    with caplog.at_level("WARNING", logger="relay"):
        outcomes.events_failed(0, [(failed, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))])
    (record,) = caplog.records
    assert record.event_id == "id-7"
    assert "seq=7" in record.getMessage() and "attempt 3" in record.getMessage()
    assert before + 2.0 <= rules.held["a"] <= time.monotonic() + 2.0
