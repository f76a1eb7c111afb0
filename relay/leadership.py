"""Which relay leads which shard: PostgreSQL advisory locks, or a file lock on SQLite.

PostgreSQL: every relay keeps one control connection. On it, it holds a shared
advisory lock that says "a relay with N shards is running" (relays count each other
by it and take a fair share of the shards), and one exclusive advisory lock per shard
it leads. A relay that dies loses its connection and so its locks at once; a relay
that stalls stops sending heartbeats and PostgreSQL ends its idle session after
``OUTBOX_LEASE_TIMEOUT``. Standbys try the free locks every second. A new leader bumps
the shard's lease epoch (the fencing token every mark checks) before it publishes.

SQLite: one relay at a time, by an exclusive lock on a file next to the database.
"""

import fcntl
import logging
import math
import os
import select
import socket
import time
import zlib
from pathlib import Path

from django.db import connection

from core.loops import RateLimited
from relay.events import NOTIFY_CHANNEL
from relay.store import pg_connect

logger = logging.getLogger("relay")

# Advisory lock key spaces (two-int form): (MEMBERS, shard count) shared by every
# running relay; (LEADER, shard) exclusive to a shard's leader.
MEMBERS = 0x6F627801
LEADER = 0x6F627802


def relay_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fair_share(shards: int, relays: int) -> int:
    """How many shards one of ``relays`` relays should lead."""
    return math.ceil(shards / max(1, relays))


class PostgresLeadership:
    heartbeat_interval = 1.0
    acquire_interval = 1.0

    def __init__(
        self,
        *,
        shard_count: int,
        store,
        lease_timeout: float,
        holder: str | None = None,
    ):
        self.shard_count = shard_count
        self.store = store  # bumps lease epochs
        self.lease_timeout = lease_timeout
        self.holder = holder or relay_identity()
        self.held: dict[int, int] = {}  # shard -> lease epoch
        self.conn = None
        self._lost: list[int] = []
        self._next_heartbeat = 0.0
        self._next_acquire = 0.0
        self._next_connect = 0.0
        self._conflict_log = RateLimited(30.0)
        self._connect_log = RateLimited(10.0)

    # -- connection ---------------------------------------------------------
    def _connect(self) -> bool:
        if self.conn is not None and not self.conn.closed:
            return True
        if time.monotonic() < self._next_connect:
            return False
        self._next_connect = time.monotonic() + 1.0
        try:
            conn = pg_connect("outbox-relay-control")
            self._set_lease_timeout(conn)
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            conn.execute(
                "SELECT pg_advisory_lock_shared(%s, %s)", (MEMBERS, self.shard_count)
            )
        except Exception as exc:  # any failure to connect: stay a standby and retry
            if self._connect_log.ready():
                logger.warning("relay: cannot reach PostgreSQL for leadership: %s", exc)
            return False
        self.conn = conn
        return True

    def _set_lease_timeout(self, conn) -> None:
        """Let PostgreSQL end this session (and so free its locks) if the relay stalls."""
        try:
            conn.execute(
                f"SET idle_session_timeout = '{int(self.lease_timeout * 1000)}ms'"
            )
        except Exception:  # PostgreSQL before 14
            logger.warning(
                "relay: this PostgreSQL has no idle_session_timeout: a stalled relay keeps "
                "its shards until its connection drops"
            )

    def _lost_connection(self, exc) -> list[int]:
        lost = sorted(self.held)
        if lost:
            logger.warning(
                "relay: leadership connection lost (%s); giving up shards %s", exc, lost
            )
        self.close()
        return lost

    def close(self) -> None:
        """Close the control connection: PostgreSQL releases every lock it held."""
        self.held.clear()
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
        self.conn = None

    # -- leadership ----------------------------------------------------------
    def heartbeat(self) -> None:
        """Show PostgreSQL this relay is alive (and notice at once if its session is gone)."""
        if self.conn is None or time.monotonic() < self._next_heartbeat:
            return
        self._next_heartbeat = time.monotonic() + self.heartbeat_interval
        try:
            self.conn.execute("SELECT 1")
        except Exception as exc:  # the session is gone: so are its locks
            self._lost += self._lost_connection(exc)

    def maintain(self) -> tuple[list[int], list[int]]:
        """Heartbeat and take free shards up to a fair share; returns (acquired, lost)."""
        acquired = []
        if self._connect():
            self.heartbeat()
            if self.conn is not None and time.monotonic() >= self._next_acquire:
                self._next_acquire = time.monotonic() + self.acquire_interval
                try:
                    acquired = self._acquire()
                except Exception as exc:
                    self._lost += self._lost_connection(exc)
                    acquired = []
        elif self.held:
            self._lost += self._lost_connection("not connected")
        # A shard lost (say by wait()) and taken back by the reconnect above is held
        # again under a new epoch: it is acquired, not lost. Losing a shard clears
        # ``held``, so what is still held now was re-acquired in this call.
        lost, self._lost = self._lost, []
        acquired = [s for s in acquired if s in self.held]
        return acquired, sorted({s for s in lost if s not in self.held})

    def _members(self) -> dict[int, int]:
        rows = self.conn.execute(
            """
            SELECT objid::int, count(*) FROM pg_locks
            WHERE locktype = 'advisory' AND classid = %s::oid AND objsubid = 2 AND granted
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            GROUP BY objid
            """,
            (MEMBERS,),
        ).fetchall()
        return dict(rows)

    def target(self) -> int:
        members = self._members()
        return fair_share(self.shard_count, members.get(self.shard_count, 1))

    def _acquire(self) -> list[int]:
        members = self._members()
        others = {count: n for count, n in members.items() if count != self.shard_count}
        if others and not self.held:
            if self._conflict_log.ready():
                logger.error(
                    "relay: relays with another shard count are running (%s); this relay "
                    "(shards=%d) stands by until they stop",
                    ", ".join(f"{n} with {count}" for count, n in others.items()),
                    self.shard_count,
                )
            return []
        target = fair_share(self.shard_count, members.get(self.shard_count, 1))
        acquired = []
        start = zlib.crc32(self.holder.encode()) % self.shard_count
        for i in range(self.shard_count):
            if len(self.held) >= target:
                break
            shard = (start + i) % self.shard_count
            if shard in self.held:
                continue
            got = self.conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (LEADER, shard)
            ).fetchone()[0]
            if got:
                self.held[shard] = self.store.bump_lease(
                    shard=shard, holder=self.holder
                )
                acquired.append(shard)
        return acquired

    def surplus(self) -> list[int]:
        """Shards above this relay's fair share, to hand over to a newcomer."""
        if not self.held or self.conn is None:
            return []
        try:
            target = self.target()
        except Exception:
            return []
        extra = len(self.held) - target
        return sorted(self.held)[-extra:] if extra > 0 else []

    def release(self, shard: int) -> None:
        self.held.pop(shard, None)
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LEADER, shard))
            except Exception as exc:  # the other shards went with the connection
                self._lost += self._lost_connection(exc)

    # -- waiting -------------------------------------------------------------
    def wait(self, timeout: float, wake_fd: int) -> bool:
        """Sleep until a NOTIFY, ``wake_fd`` is readable, or the timeout.

        False when only ``wake_fd`` woke it: no NOTIFY came, so no new row did.
        """
        if self.conn is None or self.conn.closed:
            select.select([wake_fd], [], [], min(timeout, 0.2))
            return True
        try:
            # Notifications that came in during another query wait in a backlog.
            if any(True for _ in self.conn.notifies(timeout=0)):
                return True
            readable, _, _ = select.select(
                [self.conn.fileno(), wake_fd], [], [], timeout
            )
            if self.conn.fileno() in readable:
                for _ in self.conn.notifies(timeout=0):
                    pass
                return True
            return not readable
        except Exception as exc:
            self._lost += self._lost_connection(exc)
            return True


class FileLeadership:
    """SQLite: the relay holding an exclusive lock on ``<database>.relay.lock`` leads all."""

    acquire_interval = 1.0

    def __init__(
        self,
        *,
        shard_count: int,
        store,
        lease_timeout: float = 0,
        holder: str | None = None,
    ):
        self.shard_count = shard_count
        self.store = store
        self.holder = holder or relay_identity()
        self.held: dict[int, int] = {}
        self.path = Path(f"{connection.settings_dict['NAME']}.relay.lock")
        self._file = None
        self._next_acquire = 0.0

    def heartbeat(self) -> None:
        """Nothing to do: the file lock lives as long as the process."""

    def maintain(self) -> tuple[list[int], list[int]]:
        if self.held or time.monotonic() < self._next_acquire:
            return [], []
        self._next_acquire = time.monotonic() + self.acquire_interval
        file = open(self.path, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return [], []
        self._file = file
        for shard in range(self.shard_count):
            self.held[shard] = self.store.bump_lease(shard=shard, holder=self.holder)
        return sorted(self.held), []

    def surplus(self) -> list[int]:
        return []

    def release(self, shard: int) -> None:
        self.held.pop(shard, None)
        if not self.held:
            self.close()

    def wait(self, timeout: float, wake_fd: int) -> bool:
        """Sleep until ``wake_fd`` is readable or the timeout; True: SQLite sends no
        NOTIFY, so every wake-up may have new rows."""
        select.select([wake_fd], [], [], timeout)
        return True

    def close(self) -> None:
        self.held.clear()
        if self._file is not None:
            self._file.close()  # closing the file releases the lock
            self._file = None


def leadership_for_database(**kwargs):
    if connection.vendor == "postgresql":
        return PostgresLeadership(**kwargs)
    return FileLeadership(**kwargs)
