"""Primitives every long-running loop shares: stop on signal, backoff, rate-limited logs,
produce with a full local queue, a heap settled after start-up."""

import gc
import logging
import signal
import time


def freeze_startup_heap() -> None:
    """Leave what start-up built (Django, its apps, the modules) out of every later
    garbage collection.

    A full collection walks every tracked object: some 75,000 after start-up, 27-33
    ms on the machine of the benches, in the thread that holds the GIL, so a stall
    for each event in hand. Frozen, they are never walked again (they live as long
    as the process anyway); later collections walk only what came after. Call it
    once, when the process is ready to run its loop (or serve, a gunicorn worker).
    """
    gc.collect()
    gc.freeze()


class StopOnSignal:
    """SIGTERM or SIGINT ask the loop to finish what it has in hand and leave.

    A second Ctrl-C leaves at once. Subclasses implement ``stop()`` and set
    ``loop_name``, ``stop_message`` and ``logger``.
    """

    loop_name = "loop"
    stop_message = "finishing the batch in hand"
    logger = logging.getLogger(__name__)
    _interrupts = 0

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self._interrupts += 1
        if self._interrupts > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.logger.info(
            "%s: %s received, %s",
            self.loop_name,
            signal.Signals(signum).name,
            self.stop_message,
        )
        self.stop()

    def stop(self) -> None:
        raise NotImplementedError


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff after the n-th failure (n >= 1): base, 2*base, 4*base, ... capped."""
    return min(float(cap), float(base) * 2 ** max(0, min(attempt, 64) - 1))


class RateLimited:
    """True at most once every ``seconds``: for log lines a tight loop would repeat."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = float("-inf")

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True


def produce(producer, topic: str, *, poll_seconds: float = 0.01, **kwargs) -> None:
    """``producer.produce`` that waits for room when librdkafka's local queue is full."""
    while True:
        try:
            producer.produce(topic, **kwargs)
            return
        except BufferError:
            producer.poll(poll_seconds)
