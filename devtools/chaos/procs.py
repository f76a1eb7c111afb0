"""Processes of the chaos run: start with a log file, signal, stop with a grace.

A local stand-in with the shape of the kafkadev branch's ``devtools/process.py``
(start with a log file, wait until ready, SIGTERM then SIGKILL after a grace); swap
it for that helper once merged.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class Proc:
    """One child process whose output goes to a log file (appended across restarts)."""

    def __init__(self, name: str, argv: list[str], *, env: dict, cwd: Path, log: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log
        self.popen: subprocess.Popen | None = None
        self.starts = 0
        self.exit_codes: list[int] = []

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> "Proc":
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def reap(self) -> int | None:
        """The exit code if the process ended since the last look (recorded once)."""
        if self.popen is None or self.popen.poll() is None:
            return None
        code = self.popen.returncode
        self.exit_codes.append(code)
        self.popen = None
        return code

    def signal(self, signum: int) -> bool:
        if not self.alive():
            return False
        try:
            os.kill(self.popen.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_output(self, text: str, timeout: float, since: int = 0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output()[since:]:
                return True
            if not self.alive():
                return False
            time.sleep(0.1)
        return False

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGCONT (it may be stopped), SIGTERM, then SIGKILL after ``grace``; the exit code."""
        if self.popen is None:
            return None
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            code = self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            code = self.popen.wait(10)
            code = code if code is not None else -9
        self.exit_codes.append(code)
        self.popen = None
        return code
