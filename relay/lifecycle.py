"""The stop protocol every long-running loop shares (relay, consumer)."""

import logging
import signal


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
