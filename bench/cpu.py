"""CPU time by kind of process, from /proc: which part of a run used the cores.

A kind names a function that returns its root pids when sampled (a process
started by the bench, the PostgreSQL backends of one database); a root's
descendants count with it. ``CpuByKind.snapshot()`` reads every kind's CPU
seconds, ``percent()`` turns two snapshots into % of one core per kind, with
the whole machine (every process, other users' too) and the rest beside them.
"""

import os
import time
from collections.abc import Callable

from devtools.process import cpu_seconds, parents, with_descendants

TICKS = os.sysconf("SC_CLK_TCK")
MACHINE = "whole machine"
OTHERS = "everything else (other processes)"


def machine_busy_seconds() -> float:
    """CPU seconds every core spent not idle since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / TICKS


def postgres_backends(url: str) -> Callable[[], list[int]]:
    """The pids of the backends connected to ``url``'s database, asked when called."""

    def pids() -> list[int]:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        return [pid for (pid,) in rows]

    return pids


class CpuByKind:
    """Snapshots of CPU seconds per kind of process."""

    def __init__(self, kinds: dict[str, Callable[[], list[int]]]):
        self.kinds = kinds

    def snapshot(self) -> dict:
        ppids = parents()
        snap: dict = {"at": time.monotonic(), MACHINE: machine_busy_seconds()}
        for kind, roots in self.kinds.items():
            pids = with_descendants(roots(), ppids)
            snap[kind] = {pid: cpu_seconds(pid) for pid in pids}
        return snap

    def percent(self, before: dict, after: dict) -> dict[str, float]:
        """% of one core per kind between two snapshots (processes that started in
        between count from their start; those that ended in between are lost)."""
        seconds = max(after["at"] - before["at"], 1e-9)
        used = {
            kind: sum(
                max(0.0, cpu - before[kind].get(pid, 0.0))
                for pid, cpu in after[kind].items()
            )
            for kind in self.kinds
        }
        used[MACHINE] = after[MACHINE] - before[MACHINE]
        used[OTHERS] = max(0.0, used[MACHINE] - sum(used[k] for k in self.kinds))
        return {kind: 100 * cpu / seconds for kind, cpu in used.items()}


def thread_seconds(pids: list[int], name_part: str) -> float:
    """CPU seconds used by the threads of ``pids`` whose name contains ``name_part``
    (e.g. a JVM's ``C2 CompilerThread0``), from /proc/<pid>/task."""
    total = 0.0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/comm") as f:
                    if name_part not in f.read():
                        continue
            except OSError:
                continue  # the thread ended while we looked
            total += cpu_seconds(pid, f"task/{task}/stat")
    return total
