"""Restart what dies, as systemd or Kubernetes would (the broker is the injector's job)."""

import threading
import time
from collections import Counter


class Supervisor:
    restart_delay = 0.5

    def __init__(self, stack, say):
        self.stack = stack
        self.say = say
        self.restarts: Counter = Counter()
        self.held: set[str] = set()  # names the injector restarts itself
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="supervisor", daemon=True
        )
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def hold(self, name: str) -> None:
        with self._lock:
            self.held.add(name)

    def release(self, name: str) -> None:
        with self._lock:
            self.held.discard(name)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for name, proc in list(self.stack.procs.items()):
                with self._lock:
                    if name in self.held:
                        continue
                    code = proc.reap()
                    if code is None and proc.proc is not None:
                        continue
                    time.sleep(self.restart_delay)
                    proc.start()
                    self.restarts[name] += 1
                self.say(f"supervisor: {name} exited ({code}); restarted")
