"""The faults themselves: each method does one kind and says what it hit."""

import signal
import subprocess
import time
from datetime import timedelta

import psycopg
from django.db import close_old_connections
from django.utils import timezone

from devtools.chaos.config import ROOT
from devtools.chaos.stack import APP_NAMES, PY, RELAY_APP_PREFIX
from devtools.postgres import maintenance_url

TERMINATE = """
    SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
    WHERE datname = %s AND application_name LIKE ANY(%s) {extra}
"""
APP_CONNECTIONS = [
    f"{RELAY_APP_PREFIX}%",
    "chaos-web%",
    "chaos-consumer%",
    "chaos-emails%",
]


class Faults:
    def __init__(self, stack, supervisor, say):
        self.stack = stack
        self.config = stack.config
        self.supervisor = supervisor
        self.say = say
        self.wipes: list = []  # Tansu: (when it went down, replayed since)
        self.stalls: list[dict] = []

    # -- helpers ---------------------------------------------------------------
    def _sql(self, sql: str, params=()):
        url = maintenance_url(self.config.database_url)
        with psycopg.connect(
            url, autocommit=True, application_name="chaos-injector"
        ) as c:
            cursor = c.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def _terminate(self, patterns: list[str], *, active_only: bool = False) -> int:
        extra = "AND state = 'active'" if active_only else ""
        sql = TERMINATE.format(extra=extra)
        return self._sql(sql, (self.config.database_name, patterns))[0][0]

    @staticmethod
    def _pending() -> int:
        from relay.models import OutboxEvent

        close_old_connections()
        return OutboxEvent.objects.pending().count()

    def _leaders(self) -> list:
        """Relay processes that lead a shard now, most shards first."""
        from relay.models import ShardLease

        pids: dict[int, int] = {}
        for holder in ShardLease.objects.values_list("holder", flat=True):
            pid = int(holder.rsplit(":", 1)[-1]) if ":" in holder else 0
            pids[pid] = pids.get(pid, 0) + 1
        procs = [(n, self.stack.by_pid(pid)) for pid, n in pids.items()]
        procs = [(n, p) for n, p in procs if p is not None and p.running]
        return [p for _, p in sorted(procs, key=lambda item: (-item[0], item[1].name))]

    def _backlog(self, rows: int = 400) -> int:
        """Make a deep backlog: put the newest ``rows`` published events back in the queue."""
        from relay.models import OutboxEvent
        from relay.replay import outbox_replay, outbox_replay_selection

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # early in a run: let the load make some
            close_old_connections()
            if OutboxEvent.objects.published().count() >= rows // 3:
                break
            time.sleep(0.5)
        published = OutboxEvent.objects.published().order_by("-seq")
        edge = published.values_list("created_at", flat=True)[rows - 1 : rows]
        since = edge[0] if edge else timezone.now() - timedelta(hours=1)
        selection = outbox_replay_selection(since=since, until=timezone.now())
        return outbox_replay(events=selection)

    def _wait_draining(self, queued: int, fraction: float = 0.85, timeout=15.0) -> int:
        """Wait until the relays have worked through part of the backlog."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self._pending()
            if left <= queued * fraction:
                return left
            time.sleep(0.03)
        return self._pending()

    def _kill(self, proc) -> dict:
        pid = proc.pid
        proc.signal(signal.SIGKILL)
        return {"target": proc.name, "pid": pid}

    # -- relay ------------------------------------------------------------------
    def relay_kill(self, fault) -> dict:
        relays = [p for p in self.stack.named("relay-") if p.running]
        return self._kill(relays[fault.pick % len(relays)])

    def relay_kill_leader_backlog(self, fault) -> dict:
        queued = self._backlog()
        left = self._wait_draining(queued)
        leaders = self._leaders()
        note = self._kill(leaders[0]) if leaders else {"target": "none"}
        return note | {"backlog": queued, "pending_at_kill": left}

    def relay_stall(self, fault) -> dict:
        queued = self._backlog()
        left = self._wait_draining(queued, fraction=0.9)
        leaders = self._leaders()
        if not leaders:
            return {"target": "none"}
        proc = leaders[fault.pick % len(leaders)]
        log_from = len(proc.output())
        proc.signal(signal.SIGSTOP)
        time.sleep(self.config.lease_timeout + 3)
        taken_over = proc not in self._leaders()
        proc.signal(signal.SIGCONT)
        stall = {"target": proc.name, "pid": proc.pid, "backlog": queued}
        stall |= {"pending_at_stop": left, "taken_over": taken_over}
        self.stalls.append(stall | {"log_from": log_from, "proc": proc})
        return stall

    def db_cut_relay(self, fault) -> dict:
        return {"terminated": self._terminate([f"{RELAY_APP_PREFIX}%"])}

    def db_cut_relay_marking(self, fault) -> dict:
        """Lock the pending rows in short rounds, so marks of rows in flight wait; cut them."""
        from relay.models import OutboxEvent

        queued = self._backlog()
        lock = (
            f"SELECT seq FROM {OutboxEvent._meta.db_table} WHERE published_at IS NULL"
        )
        lock += " FOR UPDATE SKIP LOCKED"
        cut = TERMINATE.format(extra="AND wait_event_type = 'Lock'")
        args = (self.config.database_name, [f"{RELAY_APP_PREFIX}-mark"])
        hits, deadline = 0, time.monotonic() + 6.0
        with psycopg.connect(
            self.config.database_url, application_name="chaos-injector"
        ) as c:
            while time.monotonic() < deadline and hits < 3:
                c.execute(lock)
                for _ in range(5):
                    time.sleep(0.02)
                    hits += c.execute(cut, args).fetchone()[0]
                c.rollback()
        return {"backlog": queued, "marks_cut_while_waiting": hits}

    # -- consumer, email ----------------------------------------------------------
    def consumer_kill(self, fault) -> dict:
        queued = self._backlog()
        self._wait_draining(queued, fraction=0.7)
        consumers = [p for p in self.stack.named("consumer-") if p.running]
        return self._kill(consumers[fault.pick % len(consumers)]) | {"backlog": queued}

    def db_cut_consumer(self, fault) -> dict:
        queued = self._backlog()
        self._wait_draining(queued, fraction=0.7)
        active = self._terminate([f"{APP_NAMES['consumer']}%"], active_only=True)
        idle = self._terminate([f"{APP_NAMES['consumer']}%"])
        return {"backlog": queued, "terminated_active": active, "terminated_idle": idle}

    def email_kill(self, fault) -> dict:
        deadline = time.monotonic() + 20
        while not self.stack.sink.sending() and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._kill(self.stack.procs["emails"]) | {
            "mid_send": self.stack.sink.sending()
        }

    # -- database, broker -------------------------------------------------------------
    def db_refuse(self, fault) -> dict:
        name = self.config.database_name
        self._sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            terminated = self._terminate(APP_CONNECTIONS)
            time.sleep(fault.hold)
        finally:
            self._sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        return {"seconds": round(fault.hold, 1), "terminated": terminated}

    def broker_restart(self, fault) -> dict:
        broker = self.stack.broker
        down_at = timezone.now()
        broker.kill()
        time.sleep(fault.hold)
        broker.start()
        if broker.keeps_data:
            return {"down_s": round(fault.hold, 1), "data": "kept"}
        since = min(down_at, self._oldest_unapplied(down_at))
        self.wipes.append((down_at, since))
        subprocess.run(
            [
                PY,
                "manage.py",
                "outbox_replay",
                "--since",
                since.isoformat(),
                "--no-wait",
            ],
            cwd=ROOT,
            env=self.stack.env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        return {
            "down_s": round(fault.hold, 1),
            "data": "wiped",
            "replayed_since": since.isoformat(),
        }

    @staticmethod
    def _oldest_unapplied(default):
        """The oldest event no consumer had applied: the wiped broker took it with it."""
        from notifications.models import ProcessedEvent
        from relay.models import OutboxEvent

        close_old_connections()
        applied = ProcessedEvent.objects.values("event_id")
        oldest = (
            OutboxEvent.objects.exclude(event_id__in=applied)
            .order_by("seq")
            .values_list("created_at", flat=True)
            .first()
        )
        return oldest or default
