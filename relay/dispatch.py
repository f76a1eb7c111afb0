"""The dispatch rules: which claimed rows may go now, and where the next claim starts.

Pure logic with no Kafka, no database and no clock of its own (callers pass ``now``,
a ``time.monotonic()`` value); only the relay's main thread uses it.

- A row is *in flight* from its produce until its shard's transaction has been
  committed and marked, or has failed: it is never dispatched twice at once.
- A key is *held* until a time while its oldest pending event backs off after a
  failed attempt: its later events wait, other keys flow.
- Under light load every claim starts at the oldest pending row. Under a large
  backlog claims walk forward from a cursor, and look back every
  ``look_back_interval`` for rows the cursor passed by (a late commit, a backoff
  that ran out). Every failure sends the cursor back to the oldest row
  (``restart_from_oldest``), so a retry never puts a key's later event before an
  earlier one.
"""

from collections.abc import Callable
from typing import NamedTuple

from relay.store import ClaimedRow, event_backoff


class ClaimStart(NamedTuple):
    """Where a claim begins: rows with ``seq > after``, ``limit`` per page."""

    after: int
    limit: int
    look_back: bool  # first look for due rows behind the cursor


class DispatchRules:
    """In-flight rows, held keys and the claim cursor of one relay."""

    claim_from_oldest_below = (
        2000  # rows in flight under which claims start at the oldest
    )
    look_back_interval = 1.0  # seconds between look-backs of a busy relay
    look_back_extra = 1000  # pending rows a look-back reads beyond those in flight
    sweep_held_above = 1000  # held keys kept before the expired holds are swept

    def __init__(self, *, batch_size: int, max_backoff: float):
        self.batch_size = batch_size
        self.max_in_flight = 4 * batch_size
        self.max_backoff = max_backoff
        self.cursor = 0
        self.in_flight: set[int] = set()
        self.in_flight_by_shard: dict[int, int] = {}
        self.held: dict[str, float] = {}  # key -> monotonic time its hold ends
        self._next_look_back = 0.0
        self.restarts = 0  # times restart_from_oldest was called
        self.more_pending = False  # the last claim stopped at a full page

    # -- claiming ------------------------------------------------------------
    def claim_start(self, now: float) -> ClaimStart:
        """Where the next claim starts and how many rows one page may hold."""
        if len(self.held) > self.sweep_held_above:  # keys whose rows went away
            self.held = {key: t for key, t in self.held.items() if t > now}
        in_flight = len(self.in_flight)
        if in_flight < self.claim_from_oldest_below:
            # Rows in flight come back from the claim and are skipped: make room.
            return ClaimStart(0, self.batch_size + in_flight, False)
        look_back = now >= self._next_look_back
        if look_back:
            self._next_look_back = now + self.look_back_interval
        return ClaimStart(self.cursor, self.batch_size, look_back)

    def look_back_limit(self) -> int:
        return len(self.in_flight) + self.look_back_extra

    def resume_point(
        self, passed: list[tuple[int, str]], after: int, now: float
    ) -> int:
        """Claim from just before the oldest due row among ``passed`` (seq, key)."""
        for seq, key in passed:
            if seq not in self.in_flight and self.held.get(key, 0) <= now:
                return seq - 1
        return after

    def admit(self, rows: list[ClaimedRow], now: float) -> list[ClaimedRow]:
        """The rows of one claimed page that may go now; the cursor moves past it."""
        in_flight, held = self.in_flight, self.held
        ready = []
        for row in rows:
            if row.seq in in_flight:
                continue
            if row.retry_in is not None:  # backing off: hold its key until it is due
                held[row.key] = now + row.retry_in
                continue
            if held and row.key in held:
                if held[row.key] > now:
                    continue
                del held[row.key]
            ready.append(row)
        if rows:
            self.cursor = rows[-1].seq
        return ready

    def next_rows(
        self,
        *,
        claim: Callable[..., list[ClaimedRow]],
        pending_before: Callable[..., list[tuple[int, str]]],
        now: float,
    ) -> list[ClaimedRow]:
        """Claim pages (``claim(after=, limit=)``) until rows may go or none are left."""
        start = self.claim_start(now)
        after = start.after
        if start.look_back:
            passed = pending_before(before=after, limit=self.look_back_limit())
            after = self.resume_point(passed, after, now)
        while True:
            rows = claim(after=after, limit=start.limit)
            ready = self.admit(rows, now)
            self.more_pending = len(rows) >= start.limit
            if ready or not self.more_pending:
                return ready
            after = rows[-1].seq

    def restart_from_oldest(self) -> None:
        """After any failure: the next claim starts at the oldest pending row."""
        self.cursor = 0
        self.restarts += 1

    # -- holding keys ----------------------------------------------------------
    def hold(self, key: str, until: float) -> None:
        self.held[key] = until

    def hold_after_failure(self, key: str, attempts: int, now: float) -> None:
        """Hold a key whose event failed its ``attempts``-th attempt for its backoff."""
        self.held[key] = now + event_backoff(attempts, self.max_backoff)

    # -- rows in flight ----------------------------------------------------------
    def dispatched(self, shard: int, seqs: list[int]) -> None:
        self.in_flight.update(seqs)
        self.in_flight_by_shard[shard] = self.in_flight_by_shard.get(shard, 0) + len(
            seqs
        )

    def release(self, shard: int, seqs: list[int]) -> None:
        """Rows done (marked) or failed: claimable again while they are pending."""
        self.in_flight.difference_update(seqs)
        self.in_flight_by_shard[shard] = self.in_flight_by_shard.get(shard, 0) - len(
            seqs
        )

    def full(self) -> bool:
        """Too much in flight: wait for the marker before claiming more."""
        return len(self.in_flight) >= self.max_in_flight

    def idle(self) -> bool:
        return not self.in_flight

    def shard_in_flight(self, shard: int) -> int:
        return self.in_flight_by_shard.get(shard, 0)


class BatchRouting:
    """Within one batch: the shard of each row, and the rows that must not go.

    A key whose event failed sends none of its later events in the batch; a shard
    whose producer failed as a whole sends nothing more.
    """

    def __init__(self, shard_count: int):
        self.shard_count = shard_count
        self.failed_keys: set[str] = set()
        self.failed_shards: dict[int, object] = {}  # shard -> its error, or None

    def shard_for(self, row: ClaimedRow) -> int | None:
        """The row's shard, or None when it must wait for a later batch."""
        if self.failed_keys and row.key in self.failed_keys:
            return None
        shard = row.bucket % self.shard_count
        if shard in self.failed_shards:
            return None
        return shard

    def key_failed(self, key: str) -> None:
        self.failed_keys.add(key)

    def shard_failed(self, shard: int, error=None) -> None:
        self.failed_shards[shard] = error
