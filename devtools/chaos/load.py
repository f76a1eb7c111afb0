"""The load: patients booking, rescheduling and cancelling over HTTP, each request recorded.

Each appointment gets a run of 2-4 changes sent one right after the other (book, then
reschedules, maybe a cancel), so the order per appointment matters; runs start at
``rate / 3`` per second over several threads. Every request is recorded with its
outcome: ``ok`` (2xx: committed), ``rejected`` (4xx: not committed) or ``unknown``
(5xx, timeout, connection lost: it may or may not have committed; the verdict
accepts either, once, in its place).
"""

import queue
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta

import requests

SLOTS = [f"{h:02d}:{m:02d}" for h in range(8, 20) for m in (0, 30)]


@dataclass
class Change:
    """One request the load generator sent, and what became of it."""

    seq: int  # order of sending within the run; changes sent together share one
    kind: str  # booked | rescheduled | cancelled
    patient_id: int
    doctor_id: int
    day: str
    slot: str
    outcome: str  # ok | rejected | unknown
    status: int  # HTTP status, 0 when no response came back
    appointment_id: str | None = None


class LoadGenerator:
    threads = 8

    def __init__(
        self, *, base_url: str, patients: list, doctors: list, rate: float, seed: int
    ):
        self.base_url = base_url
        self.doctors = doctors
        self.runs_per_s = max(0.5, rate / 3)
        self.random = random.Random(seed)
        self.patients: queue.Queue = queue.Queue()
        for p in patients:
            self.patients.put(p)
        self.changes: list[Change] = []
        self.statuses: Counter = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._permits: queue.Queue = queue.Queue(maxsize=self.threads)
        self._workers: list[threading.Thread] = []

    # -- running ---------------------------------------------------------
    def start(self) -> None:
        pacer = threading.Thread(target=self._pace, name="load-pacer", daemon=True)
        self._workers.append(pacer)
        for i in range(self.threads):
            seed = self.random.randrange(2**32)
            worker = threading.Thread(
                target=self._work,
                args=(random.Random(seed),),
                name=f"load-{i}",
                daemon=True,
            )
            self._workers.append(worker)
        for thread in self._workers:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(30)

    def counts(self) -> Counter:
        with self._lock:
            return Counter(c.outcome for c in self.changes)

    def _pace(self) -> None:
        interval = 1.0 / self.runs_per_s
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += interval
            try:
                self._permits.put(True, timeout=1)
            except queue.Full:
                next_at = time.monotonic()  # the workers are behind: do not pile up
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _work(self, rnd: random.Random) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                self._permits.get(timeout=0.5)
            except queue.Empty:
                continue
            patient = self.patients.get()
            try:
                self._run(session, rnd, patient)
            finally:
                self.patients.put(patient)

    # -- one appointment's run -----------------------------------------------
    def _run(self, session, rnd: random.Random, patient: dict) -> None:
        doctor = rnd.choice(self.doctors)
        day, slot = self._when(rnd)
        body = {
            "doctorId": str(doctor),
            "date": day,
            "timeSlot": slot,
            "reason": "chaos",
        }
        change = self._send(
            session, patient, "booked", doctor, day, slot, None, body, 0
        )
        if change.outcome != "ok":
            return
        aid = change.appointment_id
        for seq in range(1, rnd.choice((2, 3, 4))):
            if (
                rnd.random() < 0.25
            ):  # a reschedule and a cancel at once: the row lock decides
                self._race(patient, doctor, aid, seq, rnd)
                return
            if seq == 3 or rnd.random() < 0.3:
                self._send(session, patient, "cancelled", doctor, "", "", aid, {}, seq)
                return
            day, slot = self._when(rnd)
            body = {"date": day, "timeSlot": slot}
            self._send(
                session, patient, "rescheduled", doctor, day, slot, aid, body, seq
            )

    def _race(self, patient, doctor, aid, seq, rnd) -> None:
        """Two changes of one appointment sent together (same ``seq``: either order)."""
        day, slot = self._when(rnd)
        body = {"date": day, "timeSlot": slot}
        move = ("rescheduled", doctor, day, slot, aid, body, seq)
        cancel = ("cancelled", doctor, "", "", aid, {}, seq)
        threads = [
            threading.Thread(target=self._send, args=(requests, patient, *args))
            for args in (move, cancel)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    @staticmethod
    def _when(rnd: random.Random) -> tuple[str, str]:
        day = date.today() + timedelta(days=rnd.randrange(2, 330))
        return day.isoformat(), rnd.choice(SLOTS)

    def _send(
        self, session, patient, kind, doctor, day, slot, appointment_id, body, seq
    ):
        if appointment_id is None:
            url = f"{self.base_url}/api/appointments"
        else:
            action = "reschedule" if kind == "rescheduled" else "cancel"
            url = f"{self.base_url}/api/appointments/{appointment_id}/{action}"
        headers = {"Authorization": f"Bearer {patient['token']}"}
        try:
            response = session.post(url, json=body, headers=headers, timeout=15)
            status = response.status_code
        except requests.RequestException:
            status, response = 0, None
        outcome = (
            "ok"
            if 200 <= status < 300
            else "rejected"
            if 400 <= status < 500
            else "unknown"
        )
        if outcome == "ok" and appointment_id is None:
            appointment_id = response.json()["id"]
        change = Change(
            seq, kind, patient["id"], doctor, day, slot, outcome, status, appointment_id
        )
        with self._lock:
            self.changes.append(change)
            self.statuses[status] += 1
        return change
