"""The relay: claim pending outbox rows, publish them per shard, mark what was acknowledged.

Three stages run at once so that a large backlog keeps the database and the broker
busy together:

    main thread    claim batch N+1 (one SELECT ... FOR UPDATE SKIP LOCKED) and produce
                   it into each shard's Kafka transaction
    committer      commit batch N's transactions (wait for the broker's acknowledgement)
    marker         mark batch N-1 published (one UPDATE per shard, fenced by the lease)

Batch N+1 is produced only once batch N's commit succeeded; if it failed, the rows
claimed since are dropped and claiming starts again from the oldest pending row, so a
retry can never put a key's later event before an earlier one.
"""

import json
import logging
import os
import queue
import threading
import time
from datetime import UTC, datetime

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from django.conf import settings
from django.db import Error as DjangoDatabaseError
from django.db import close_old_connections, connection

from relay import kafka
from relay.leadership import leadership_for_database, relay_identity
from relay.lifecycle import StopOnSignal
from relay.metrics import (
    BATCH_DURATION,
    BATCH_SIZE,
    FAILED_ATTEMPTS,
    PUBLISHED,
    SHARD_LEADER,
)
from relay.publisher import DeliveryErrorPolicy, Outcome, Part, ShardPublisher
from relay.retention import outbox_purge_batch
from relay.store import backoff_seconds, store_for_database

logger = logging.getLogger("relay")

try:
    import psycopg

    DATABASE_ERRORS = (DjangoDatabaseError, psycopg.Error)
except ImportError:  # SQLite-only installs
    DATABASE_ERRORS = (DjangoDatabaseError,)


class Batch:
    """Rows claimed together: one Kafka transaction per shard, then one mark per shard."""

    def __init__(self):
        self.parts: dict[int, Part] = {}
        self.claimed_at = time.monotonic()
        self.committed = threading.Event()
        self.settled = False  # the commit outcome has been handled by the main thread
        self.marked: dict[int, int] = {}  # shard -> rows marked
        self.mark_errors: dict[int, str] = {}

    def __len__(self):
        return sum(len(p.seqs) for p in self.parts.values())


class Relay(StopOnSignal):
    """Publish the outbox to Kafka until stopped."""

    loop_name = "relay"
    stop_message = "finishing the batches in hand"
    logger = logger

    stop_grace = 8.0  # seconds to flush and mark after SIGTERM (exit well within 10 s)
    rescan_interval = 1.0  # how often a busy relay looks for rows its cursor passed by
    light_load = 2000  # below this many rows in flight, every claim starts at the oldest
    surplus_interval = 2.0

    def __init__(
        self,
        *,
        shards: int | None = None,
        batch_size: int | None = None,
        poll_interval: float | None = None,
        once: bool = False,
        producer_overrides: dict | None = None,
        lease_timeout: float | None = None,
        purge: bool = True,
    ):
        conf = settings.OUTBOX
        self.shard_count = shards or conf["SHARDS"]
        self.batch_size = batch_size or conf["BATCH_SIZE"]
        self.poll_interval = (
            poll_interval if poll_interval is not None else conf["POLL_INTERVAL_MS"] / 1000
        )
        self.once = once
        self.producer_overrides = producer_overrides or {}
        self.lease_timeout = lease_timeout or conf["LEASE_TIMEOUT_S"]
        self.max_backoff = conf["MAX_BACKOFF_S"]
        self.max_in_flight = 4 * self.batch_size
        self.purge = purge
        self.message_timeout = settings.KAFKA["MESSAGE_TIMEOUT_MS"] / 1000
        self.holder = relay_identity()

        self.running = True
        self.published = 0
        self._stop_requested_at: float | None = None

        self.store = store_for_database("outbox-relay")
        self.leadership = leadership_for_database(
            shard_count=self.shard_count,
            store=self.store,
            lease_timeout=self.lease_timeout,
            holder=self.holder,
        )
        self.publishers: dict[int, ShardPublisher] = {}
        self._next_start: dict[int, float] = {}
        self.draining: set[int] = set()
        self.in_flight: set[int] = set()
        self.in_flight_by_shard: dict[int, int] = {}
        self.cursor = 0
        self.frozen: dict[str, float] = {}  # key -> monotonic time its backoff ends
        self.last_batch: Batch | None = None
        self._claimed_nothing = False
        self._admin = None
        self._topics_ready: set[str] = set()
        self._broker_pause_until = 0.0
        self._broker_failures = 0
        self._last_broker_log = 0.0
        self._next_rescan = 0.0
        self._next_surplus = 0.0
        self._next_purge = 0.0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._commits: queue.Queue = queue.Queue()
        self._marks: queue.Queue = queue.Queue()
        self._results: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._thread_error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------
    def stop(self) -> None:
        self.running = False
        self._stop_requested_at = self._stop_requested_at or time.monotonic()
        self._wake()

    def run(self) -> int:
        """Run until stopped; return the number of events published."""
        logger.info(
            "relay: started (brokers=%s, shards=%d, batch=%d, holder=%s)",
            settings.KAFKA["BROKERS"],
            self.shard_count,
            self.batch_size,
            self.holder,
        )
        self._start_threads()
        try:
            while self.running:
                try:
                    worked = self._step()
                except DATABASE_ERRORS as exc:
                    logger.warning("relay: database error, reconnecting: %s", exc)
                    self._reset_database()
                    self.cursor = 0
                    self._wait(1.0)
                    continue
                except KafkaException as exc:  # e.g. topics cannot be checked or created
                    self._broker_failed(exc.args[0], 0)
                    self.cursor = 0
                    continue
                if not worked:
                    if self.once and self._drained():
                        break
                    self._wait(self.poll_interval)
        except KeyboardInterrupt:  # a second Ctrl-C: leave now, unmarked rows go out again
            self.stop_grace = 0.0
            raise
        finally:
            self._shutdown()
        return self.published

    def _step(self) -> bool:
        """One turn of the loop; False when there was nothing to publish."""
        self._maintain_leadership()
        self._collect()
        if self.purge:
            self._purge_if_due()
        shards = self._publishable_shards()
        if not shards or time.monotonic() < self._broker_pause_until:
            return False
        if len(self.in_flight) >= self.max_in_flight:
            return False  # the marker is behind: wait for it (it wakes us)
        return self._publish(shards)

    def _drained(self) -> bool:
        """For --once: the last claim found nothing and nothing is in flight."""
        return self._claimed_nothing and not self.in_flight

    # -- leadership --------------------------------------------------------
    def _maintain_leadership(self) -> None:
        acquired, lost = self.leadership.maintain()
        for shard in lost:
            self._drop_shard(shard, "leadership lost")
        for shard in acquired:
            self.publishers[shard] = ShardPublisher(shard, **self.producer_overrides)
            self._next_start[shard] = 0.0
            logger.info(
                "relay: leading shard %d of %d (epoch %d)",
                shard,
                self.shard_count,
                self.leadership.held[shard],
            )
        now = time.monotonic()
        for shard, publisher in list(self.publishers.items()):
            if not publisher.ready and now >= self._next_start.get(shard, 0.0):
                self._start_publisher(shard, publisher)
        if now >= self._next_surplus:
            self._next_surplus = now + self.surplus_interval
            self.draining |= set(self.leadership.surplus())
        for shard in list(self.draining):
            busy = self.last_batch is not None and shard in self.last_batch.parts and not self.last_batch.settled
            if not self.in_flight_by_shard.get(shard) and not busy:
                self.draining.discard(shard)
                self._drop_shard(shard, "handed over to a relay that has fewer shards")

    def _start_publisher(self, shard: int, publisher: ShardPublisher) -> None:
        try:
            publisher.start(timeout=min(2.0, self.lease_timeout / 3))
        except KafkaException as exc:
            self._next_start[shard] = time.monotonic() + 2.0
            self._log_broker_problem(exc.args[0])
            if publisher.producer is not None and exc.args[0].fatal():
                self.publishers[shard] = ShardPublisher(shard, **self.producer_overrides)
            return
        SHARD_LEADER.labels(str(shard)).set(1)
        logger.info("relay: shard %d producer ready (older producers fenced)", shard)

    def _drop_shard(self, shard: int, reason: str) -> None:
        publisher = self.publishers.pop(shard, None)
        if publisher is not None:
            publisher.close()
            logger.warning("relay: stopped publishing shard %d: %s", shard, reason)
        self.leadership.release(shard)
        self.draining.discard(shard)
        SHARD_LEADER.labels(str(shard)).set(0)

    def _publishable_shards(self) -> list[int]:
        return sorted(
            shard
            for shard, publisher in self.publishers.items()
            if publisher.ready and shard not in self.draining and shard in self.leadership.held
        )

    # -- claim and produce -------------------------------------------------
    def _publish(self, shards: list[int]) -> bool:
        rows = self._claim(shards)
        self._claimed_nothing = not rows
        if not rows:
            return False
        if not self._await_commit():
            return True  # the previous batch failed: claim again from the oldest row
        self._ensure_topics({row[2] for row in rows})
        batch = Batch()
        failures = self._produce(batch, rows)
        if batch.parts:
            self.last_batch = batch
            self._commits.put(batch)
        for shard, failed in failures.items():
            self._event_failures(shard, failed)
        return bool(batch.parts or failures)

    def _claim(self, shards: list[int]) -> list:
        """Dispatchable rows in id order: not in flight, key not waiting for a retry."""
        now = time.monotonic()
        light = len(self.in_flight) < self.light_load
        if light:
            after = 0
        else:
            after = self.cursor
            if now >= self._next_rescan:
                self._next_rescan = now + self.rescan_interval
                after = self._rescan(shards, after)
        limit = self.batch_size + (len(self.in_flight) if light else 0)
        if len(self.frozen) > 1000:  # keys whose rows went away while they waited
            self.frozen = {k: t for k, t in self.frozen.items() if t > now}
        in_flight, frozen = self.in_flight, self.frozen
        while True:
            rows = self.store.claim(
                after=after, limit=limit, shards=shards, shard_count=self.shard_count
            )
            ready = []
            for row in rows:
                seq, key, wait = row[0], row[3], row[7]
                if seq in in_flight:
                    continue
                if wait is not None:
                    frozen[key] = now + wait
                    continue
                if frozen and key in frozen:
                    if frozen[key] > now:
                        continue
                    del frozen[key]
                ready.append(row)
            if rows:
                self.cursor = rows[-1][0]
            if ready or len(rows) < limit:
                return ready
            after = rows[-1][0]

    def _rescan(self, shards: list[int], after: int) -> int:
        """Find pending rows behind the cursor (late commits, retries due) and go back to them."""
        rows = self.store.pending_before(
            before=after, limit=len(self.in_flight) + 1000, shards=shards, shard_count=self.shard_count
        )
        now = time.monotonic()
        for seq, key in rows:
            if seq not in self.in_flight and self.frozen.get(key, 0) <= now:
                return seq - 1
        return after

    def _produce(self, batch: Batch, rows: list) -> dict[int, list]:
        """Produce the rows into one transaction per shard; a row that cannot be produced backs off."""
        count = self.shard_count
        publishers, leases = self.publishers, self.leadership.held
        parts = batch.parts
        blocked: set[str] = set()  # keys with a failed event: their later events wait
        broken: dict[int, object] = {}  # shards whose producer failed as a whole
        failures: dict[int, list] = {}
        decode = json.JSONDecoder().raw_decode
        for row in rows:
            seq, bucket, _, key, _, headers, attempts, _ = row
            if blocked and key in blocked:
                continue
            shard = bucket % count
            if shard in broken:
                continue
            part = parts.get(shard)
            try:
                if part is None:
                    publisher = publishers.get(shard)
                    if publisher is None or not publisher.ready or shard not in leases:
                        broken[shard] = None  # lost or handed over since the claim
                        continue
                    publisher.begin()
                    part = parts[shard] = Part(shard, leases[shard], publisher, len(rows))
                part.send(row, decode(headers)[0])
            except KafkaException as exc:
                err = exc.args[0]
                if DeliveryErrorPolicy.classify(err) is Outcome.RETRY_EVENT:
                    blocked.add(key)
                    failures.setdefault(shard, []).append((seq, key, attempts, err))
                else:
                    broken[shard] = err
        for shard, err in broken.items():
            part = parts.pop(shard, None)
            if part is not None:
                part.publisher.abort()
            if err is not None:
                self._publisher_failed(shard, err, len(part.rows) if part else 0)
            self.cursor = 0
        for shard in [s for s, p in parts.items() if not p.rows]:
            parts.pop(shard).publisher.abort()
        for shard, part in parts.items():
            part.publisher.producer.poll(0)
            self.in_flight.update(part.seqs)
            self.in_flight_by_shard[shard] = self.in_flight_by_shard.get(shard, 0) + len(part.rows)
        return failures

    def _ensure_topics(self, topics: set[str]) -> None:
        missing = topics - self._topics_ready
        if missing:
            if self._admin is None:
                self._admin = AdminClient(kafka.admin_config())
            kafka.ensure_topics(self._admin, sorted(missing), timeout=min(2.0, self.lease_timeout / 3))
            self._topics_ready |= missing

    # -- outcomes ----------------------------------------------------------
    def _await_commit(self) -> bool:
        """Wait (heartbeating) until the last batch's commit is known; False if it failed."""
        batch, self.last_batch = self.last_batch, None
        if batch is None:
            return True
        while not batch.committed.wait(0.2):
            if self._thread_error is not None:
                self._collect()  # raises it
            self.leadership.heartbeat()
        return self._settle(batch)

    def _settle(self, batch: Batch) -> bool:
        """Handle a batch's commit outcome once; False if it failed just now."""
        if batch.settled:
            return True
        batch.settled = True
        ok = True
        for shard, part in batch.parts.items():
            if part.error is None:
                continue
            ok = False
            self._forget(shard, part.seqs)
            outcome = DeliveryErrorPolicy.classify(part.error)
            event_errors = [
                (part.rows[i][0], part.rows[i][3], part.rows[i][6], err)
                for i, err in part.errors
                if DeliveryErrorPolicy.classify(err) is Outcome.RETRY_EVENT
            ]
            fenced = [err for _, err in part.errors if DeliveryErrorPolicy.classify(err) is Outcome.FENCED]
            if outcome is not Outcome.FENCED and fenced:
                outcome, part.error = Outcome.FENCED, fenced[0]
            if outcome is not Outcome.FENCED and event_errors:
                self._event_failures(shard, event_errors)
                if not part.publisher.ready:
                    self._publisher_failed(shard, part.error, 0)
            else:
                self._publisher_failed(shard, part.error, len(part.rows))
        if not ok:
            self.cursor = 0
        else:
            self._broker_failures = 0
        return ok

    def _event_failures(self, shard: int, failed: list) -> None:
        """Events that cannot be written: count the attempt, back off, hold their keys."""
        now = time.monotonic()
        for seq, key, attempts, err in failed:
            self.frozen[key] = now + backoff_seconds(attempts + 1, self.max_backoff)
            logger.warning(
                "relay: event seq=%d key=%s failed (attempt %d): %s", seq, key, attempts + 1, err
            )
        FAILED_ATTEMPTS.labels("event").inc(len(failed))
        epoch = self.leadership.held.get(shard)
        if epoch is None:
            return
        try:
            recorded = self.store.record_failures(
                failures=[(seq, str(err)) for seq, _, _, err in failed],
                shard=shard,
                epoch=epoch,
                max_backoff=self.max_backoff,
            )
        except DATABASE_ERRORS as exc:  # the keys stay held in memory; the count waits
            logger.warning("relay: could not record failed attempts: %s", exc)
            self.store.close()
            return
        keys = {seq: key for seq, key, _, _ in failed}
        for seq, _, delay in recorded:
            self.frozen[keys[seq]] = now + delay

    def _publisher_failed(self, shard: int, error, count: int) -> None:
        """A shard's transaction failed as a whole: fenced, or the broker is unavailable."""
        if DeliveryErrorPolicy.classify(error) is Outcome.FENCED:
            FAILED_ATTEMPTS.labels("fenced").inc(count)
            self._drop_shard(shard, f"fenced by a newer leader ({error})")
            return
        self._broker_failed(error, count)
        publisher = self.publishers.get(shard)
        if publisher is not None and (not publisher.ready or error.fatal()):
            publisher.close()
            self.publishers[shard] = ShardPublisher(shard, **self.producer_overrides)
            self._next_start[shard] = self._broker_pause_until

    def _broker_failed(self, error, count: int) -> None:
        FAILED_ATTEMPTS.labels("broker").inc(count)
        self._broker_failures += 1
        pause = min(5.0, 0.25 * 2 ** min(self._broker_failures, 5))
        self._broker_pause_until = time.monotonic() + pause
        self._topics_ready.clear()
        self._log_broker_problem(error)

    def _forget(self, shard: int, seqs: list[int]) -> None:
        self.in_flight.difference_update(seqs)
        self.in_flight_by_shard[shard] = self.in_flight_by_shard.get(shard, 0) - len(seqs)

    def _collect(self) -> None:
        """Take in the batches the marker finished."""
        if self._thread_error is not None:
            error, self._thread_error = self._thread_error, None
            raise error
        while True:
            try:
                batch = self._results.get_nowait()
            except queue.Empty:
                return
            self._settle(batch)
            for shard, part in batch.parts.items():
                if part.error is not None:
                    continue
                self._forget(shard, part.seqs)
                marked = batch.marked.get(shard)
                if marked:
                    self.published += marked
                    PUBLISHED.labels(str(shard)).inc(marked)
                    BATCH_SIZE.observe(marked)
                    BATCH_DURATION.observe(part.committed_at_monotonic - batch.claimed_at)
                elif shard in batch.mark_errors:
                    # Acknowledged but not marked: they go out once more (consumers skip them).
                    logger.warning(
                        "relay: could not mark %d events of shard %d: %s",
                        len(part.rows),
                        shard,
                        batch.mark_errors[shard],
                    )
                    self.cursor = 0
                else:
                    FAILED_ATTEMPTS.labels("fenced").inc(len(part.rows))
                    self._drop_shard(shard, "its lease moved to another relay")

    # -- committer and marker threads ----------------------------------------
    def _start_threads(self) -> None:
        for target, name in ((self._committer, "relay-commit"), (self._marker, "relay-mark")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _commit_deadline(self, started: float) -> float:
        deadline = started + self.message_timeout + 5
        if self._stop_requested_at is not None:
            deadline = min(deadline, self._stop_requested_at + self.stop_grace)
        return deadline

    def _committer(self) -> None:
        try:
            while True:
                batch = self._commits.get()
                if batch is None:
                    return
                started = time.monotonic()
                for part in batch.parts.values():
                    try:
                        part.publisher.commit(self._commit_deadline(started))
                        part.committed_at = time.time()
                        part.committed_at_monotonic = time.monotonic()
                    except KafkaException as exc:
                        part.error = exc.args[0]
                batch.committed.set()
                self._wake()
                self._marks.put(batch)
        except BaseException as exc:  # a bug or a crash: the main thread re-raises it
            self._thread_error = exc
            self._wake()
        finally:
            self._marks.put(None)

    def _marker(self) -> None:
        store = store_for_database("outbox-relay-mark")
        try:
            while True:
                batch = self._marks.get()
                if batch is None:
                    return
                self._mark(batch, store)
                self._results.put(batch)
                self._wake()
        except BaseException as exc:  # a bug or a crash: the main thread re-raises it
            self._thread_error = exc
            self._wake()
        finally:
            store.close()
            connection.close()

    def _mark(self, batch: Batch, store) -> None:
        """Mark the rows of every shard whose transaction the broker acknowledged."""
        for shard, part in batch.parts.items():
            if part.error is None:
                self._mark_part(store, batch, shard, part)

    def _mark_part(self, store, batch: Batch, shard: int, part: Part) -> None:
        published_at = datetime.fromtimestamp(part.committed_at, UTC)
        partitions, offsets = part.acknowledged()
        for attempt in range(3):
            try:
                batch.marked[shard] = store.mark_published(
                    seqs=part.seqs,
                    partitions=partitions,
                    offsets=offsets,
                    shard=shard,
                    epoch=part.epoch,
                    published_at=published_at,
                )
                return
            except DATABASE_ERRORS as exc:
                batch.mark_errors[shard] = str(exc)
                store.close()
                time.sleep(0.2 * (attempt + 1))

    # -- waiting and shutting down -------------------------------------------
    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _wait(self, timeout: float) -> None:
        """Sleep until a NOTIFY, a finished batch, a signal, or the timeout."""
        if not self.running:
            return
        self.leadership.wait(min(timeout, 1.0), self._wake_r)
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _shutdown(self) -> None:
        """Let the batches in hand commit and be marked, then let go of everything."""
        self.stop()
        self._commits.put(None)
        deadline = self._stop_requested_at + self.stop_grace + 1
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        try:
            self._collect()
        except BaseException as exc:  # already on the way out
            logger.warning("relay: could not take in the last batches: %r", exc)
        unmarked = len(self.in_flight)
        if unmarked:
            logger.warning("relay: %d events unacknowledged at exit; they will be sent again", unmarked)
        for shard in list(self.publishers):
            self._drop_shard(shard, "relay stopping")
        self.leadership.close()
        self.store.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        logger.info("relay: stopped after publishing %d events", self.published)

    def _reset_database(self) -> None:
        self.store.close()
        try:
            connection.close()
        except DATABASE_ERRORS:
            pass
        close_old_connections()

    def _purge_if_due(self) -> None:
        """The leader of shard 0 deletes expired published rows, one bounded batch per turn."""
        now = time.monotonic()
        if now < self._next_purge or 0 not in self.leadership.held:
            return
        deleted = outbox_purge_batch()
        if deleted:
            logger.info("relay: purged %d published events past retention", deleted)
        full = deleted >= settings.OUTBOX["PURGE_BATCH_SIZE"]
        self._next_purge = now if full else now + settings.OUTBOX["PURGE_INTERVAL_S"]

    def _log_broker_problem(self, error) -> None:
        now = time.monotonic()
        if now - self._last_broker_log >= 10:
            self._last_broker_log = now
            logger.warning("relay: broker unavailable or rejecting events, will retry: %s", error)
