"""A one-line progress bar for long management commands (the only one)."""

import sys
import time


class ProgressBar:
    """``label [#####-----] 5,000/10,000  50% (1,234/s)``, redrawn in place on a terminal."""

    def __init__(self, label: str, total: int, stream=None, width: int = 30):
        self.label = label
        self.total = max(total, 0)
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._tty = getattr(self.stream, "isatty", lambda: False)()

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < (0.1 if self._tty else 2.0):
            return
        self._last_draw = now
        fraction = min(1.0, done / self.total) if self.total else 1.0
        filled = int(fraction * self.width)
        rate = done / max(now - self.started, 1e-9)
        line = (
            f"{self.label} [{'#' * filled}{'-' * (self.width - filled)}] "
            f"{done:,}/{self.total:,} {fraction:4.0%} ({rate:,.0f}/s)"
        )
        self.stream.write(
            ("\r" if self._tty else "") + line + ("" if self._tty else "\n")
        )
        self.stream.flush()

    def __call__(self, done: int, total: int) -> None:
        """The callback form, ``progress(done, total)``: finishes at the total."""
        self.total = max(total, 0)
        if done >= self.total:
            self.finish(done)
        else:
            self.update(done)

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
