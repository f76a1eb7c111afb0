"""One process helper: start with its log in a file, wait ready, stop, always reaped."""

import ctypes
import fcntl
import os
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path


class ProcessFailed(RuntimeError):
    """A process exited or never became ready; the message ends with its log's tail."""


# Ports for the servers that tests, benches and make run start on loopback. They
# come from below the kernel's ephemeral range, so that no outgoing connection is
# given one as its source port before its server binds it, and each one handed out
# is claimed with a lock file (flock) held until this process exits, so that
# processes running side by side (make test's two passes, a bench beside a test
# run) never hand out the same port. The lock files stay; a lock ends with its
# process, however it ends.
PORT_LOCKS = Path(tempfile.gettempdir()) / f"healthcare-ports-{os.getuid()}"
_claimed: dict[int, object] = {}  # port -> its open lock file
_claim_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on and no other process has
    been handed by this function; it stays this process's."""
    low, high = port_range()
    start = random.randrange(low, high)
    with _claim_lock:
        for i in range(high - low):
            port = low + (start - low + i) % (high - low)
            if _claim(port):
                return port
    raise RuntimeError(f"no free TCP port on 127.0.0.1 in {low}-{high - 1}")


def port_range() -> tuple[int, int]:
    """[low, high) outside the ephemeral range (net.ipv4.ip_local_port_range):
    12,000 ports below it, or above it when it starts too low for that."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        ephemeral_low, ephemeral_high = (int(v) for v in text.split()[:2])
    except (OSError, ValueError):
        ephemeral_low, ephemeral_high = 32768, 60999
    high = min(ephemeral_low, 32768)
    if high - 1024 >= 2000:
        return max(1024, high - 12000), high
    if 65536 - (ephemeral_high + 1) >= 2000:
        return ephemeral_high + 1, 65536
    return 1024, 65536  # no room outside it: the lock files still keep us apart


def _claim(port: int) -> bool:
    """Take ``port`` for this process: its lock file, and nothing bound there."""
    if port in _claimed:
        return False
    try:
        PORT_LOCKS.mkdir(parents=True, exist_ok=True)
        lock = open(PORT_LOCKS / f"{port}.lock", "a")  # held until this process exits
    except OSError:
        return False
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return False
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            lock.close()
            return False
    _claimed[port] = lock
    return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file ("" when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Process:
    """A child process whose stdout and stderr go to ``log_path``.

    ``start(ready=...)`` polls the probe until it is true; if the process exits or
    the timeout passes first, the process is stopped and ``ProcessFailed`` names
    the last lines of its log. ``stop()`` sends SIGTERM, then SIGKILL after the
    grace, and always waits for the child. Use it as a context manager.
    """

    def __init__(
        self, name: str, argv: list[str], *, log_path: Path, env=None, cwd=None
    ):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self._seen = 0  # how far log_contains() has read

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(
        self, ready: Callable[[], bool] | None = None, timeout: float = 30
    ) -> "Process":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._seen = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            # appended across restarts: mark each (the name only: argv may hold
            # a password, e.g. Kafka's --add-scram)
            log.write(f"--- start: {self.name}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches us, not it
                preexec_fn=death_signal(),
            )
        if ready is not None:
            self.wait_ready(ready, timeout)
        return self

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.fail(
                    f"exited with code {self.proc.returncode} before it was ready"
                )
            if _probe(ready):
                return
            if time.monotonic() > deadline:
                self.stop(grace=5)
                self.fail(f"was not ready within {timeout:.0f} s")
            time.sleep(0.1)

    def log_contains(self, text: str) -> bool:
        """Whether ``text`` is in the log since the last start (read as it grows)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, self._seen - len(text)))
                chunk = f.read()
        except OSError:
            return False
        self._seen = max(self._seen - len(text), 0) + len(chunk)
        return text.encode() in chunk

    def output(self) -> str:
        """The whole log so far ("" when there is none)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def reap(self) -> int | None:
        """The exit code once the process has ended, reported once (then forgotten)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        code = self.proc.returncode
        self.proc = None
        return code

    def fail(self, what: str) -> None:
        lines = tail(self.log_path, 400).splitlines()
        errors = [line for line in lines if " ERROR " in line or " FATAL " in line]
        first = f"\nfirst error: {errors[0]}" if errors else ""
        raise ProcessFailed(
            f"{self.name} {what}{first}\nlast lines of {self.log_path}:\n"
            + "\n".join(lines[-25:])
        )

    def signal(self, signum: int) -> None:
        if self.running:
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL and reap (a crash, for failure tests)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()

    def stop(self, grace: float = 10) -> int | None:
        """SIGTERM, SIGKILL after ``grace`` seconds; returns the exit code.

        A SIGCONT goes first: a process stopped by SIGSTOP cannot act on SIGTERM.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def rss_mb(self) -> float:
        """Resident memory of the running process in MB (0 when gone)."""
        return rss_mb(self.pid) if self.pid else 0.0

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB, from /proc (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def stat_fields(path: str) -> list[str] | None:
    """The fields of a /proc ``stat`` file after the command name (state, ppid, ...),
    None when the process or thread is gone."""
    try:
        with open(path) as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int, stat: str = "stat") -> float:
    """User + system CPU time process ``pid`` has used, from /proc (0 when gone);
    ``stat="task/<tid>/stat"`` for one of its threads."""
    fields = stat_fields(f"/proc/{pid}/{stat}")
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    fields = stat_fields(f"/proc/{pid}/stat")
    return fields is not None and fields[0] != "Z"


def parents() -> dict[int, int]:
    """pid -> parent pid of every process now."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(f"/proc/{entry}/stat")
            if fields is not None:  # else gone while we looked
                found[int(entry)] = int(fields[1])
    return found


def with_descendants(roots: list[int], ppids: dict[int, int] | None = None) -> set[int]:
    """``roots`` and every process below them (``ppids``: parents(), read now if
    not given)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in (parents() if ppids is None else ppids).items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [pid for pid in roots if pid]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def death_signal():
    """The child's pre-exec hook: SIGTERM when we die, from the main thread only.

    Linux sends PR_SET_PDEATHSIG when the *thread* that forked the child ends, so
    a child started by a worker thread (the chaos supervisor and fault injector)
    would be terminated when that thread finishes; those children rely on
    ``stop()`` instead.
    """
    if threading.current_thread() is threading.main_thread():
        return die_with_parent
    return None


def die_with_parent() -> None:
    """SIGTERM this process when its parent dies (no orphaned brokers on Linux).

    In a child before exec (``death_signal``), or by a process for itself."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: stop() is the only guard
        pass


def _probe(ready: Callable[[], bool]) -> bool:
    try:
        return bool(ready())
    except Exception:  # a probe that cannot connect yet is "not ready"
        return False
