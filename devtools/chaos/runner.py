"""One chaos run from start to verdict; ``python -m devtools.chaos`` calls ``main``.

1. a fresh PostgreSQL database (``CHAOS_DATABASE_URL``, default ``healthcare_chaos``),
   migrated; the broker; an SMTP sink; doctors and patients, with access tokens
   minted in this process (the auth endpoints and their throttle are not used);
2. gunicorn with deploy/gunicorn.conf.py, two relays ``--shards 4``, two consumers
   ``--no-email`` and ``send_emails``, all restarted by a supervisor when they die;
3. the load for ``DURATION`` seconds while the seeded schedule injects the faults;
4. stop the load, wait (bounded) for the pipeline to drain, stop every process with
   SIGTERM, read the topic, judge; a table, then one JSON line; exit 1 on a failure.
"""

import os
import sys
import threading
import time

from django.db import DatabaseError

from devtools.chaos import report, verdict
from devtools.chaos.config import Config
from devtools.chaos.stack import APP_NAMES, Stack
from devtools.postgres import maintenance_url, recreate_database


def say(message: str) -> None:
    print(message, flush=True)


def setup_django(stack: Stack) -> None:
    os.environ.update(stack.env)
    os.environ["PGAPPNAME"] = APP_NAMES["runner"]
    import django

    django.setup()


def make_people(patients: int = 120, doctors: int = 12):
    """Doctors working every day 08:00-20:00; patients; their tokens, minted here."""
    from datetime import time as clock

    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    from appointments.models import Doctor
    from appointments.services import doctor_set_working_hours

    User = get_user_model()
    doctor_ids = []
    for i in range(doctors):
        user = User.objects.create_user(f"chaos-dr-{i}", email=f"dr-{i}@chaos.example")
        doctor = Doctor.objects.create(
            user=user, name=f"Dr. Chaos {i}", specialty="Chaos"
        )
        doctor_set_working_hours(
            doctor=doctor, weekdays=range(7), start=clock(8), end=clock(20)
        )
        doctor_ids.append(doctor.pk)
    people = []
    for i in range(patients):
        user = User.objects.create_user(f"chaos-p-{i}", email=f"p-{i}@chaos.example")
        people.append({"id": user.pk, "token": str(AccessToken.for_user(user))})
    return people, doctor_ids


class Progress:
    def __init__(self, load, injector, supervisor, started):
        self.load, self.injector, self.supervisor = load, injector, supervisor
        self.started = started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        while not self._stop.wait(5):
            say(self.line())

    def line(self) -> str:
        from django.db import close_old_connections

        from notifications.models import ProcessedEvent
        from relay.models import OutboxEvent

        c = self.load.counts()
        try:
            close_old_connections()
            db = f"events={OutboxEvent.objects.count()} pending="
            db += f"{OutboxEvent.objects.pending().count()} inbox={ProcessedEvent.objects.count()}"
        except DatabaseError as exc:  # the database may be refusing connections now
            db = f"database unavailable ({type(exc).__name__})"
        return (
            f"[{time.monotonic() - self.started:5.0f}s] changes ok={c['ok']} "
            f"rejected={c['rejected']} lost={c['unknown']} {db} "
            f"faults={len(self.injector.done)} restarts={sum(self.supervisor.restarts.values())}"
        )


def drain(timeout: float) -> tuple[float, dict]:
    """Wait until nothing is pending, every event is applied, no email is due.

    Returns the seconds taken and when each of the three first reached zero.
    """
    from django.db import close_old_connections
    from django.utils import timezone

    from notifications.models import EmailDelivery, ProcessedEvent
    from relay.models import OutboxEvent

    started, reached = time.monotonic(), {}
    checks = {
        "outbox": lambda: OutboxEvent.objects.pending().count(),
        "inbox": lambda: OutboxEvent.objects.exclude(
            event_id__in=ProcessedEvent.objects.values("event_id")
        ).count(),
        "email": lambda: EmailDelivery.objects.due(timezone.now()).count(),
    }
    while time.monotonic() - started < timeout and len(reached) < len(checks):
        try:
            close_old_connections()
            for name, left in checks.items():
                if name not in reached and not left():
                    reached[name] = round(time.monotonic() - started, 1)
        except DatabaseError:
            pass
        time.sleep(0.25)
    return time.monotonic() - started, reached


def main() -> int:
    config = Config.from_env()
    say(
        f"chaos: seed {config.seed}, {config.duration:g} s, broker {config.broker}, "
        f"database {config.database_name}, logs in {config.workdir}"
    )
    recreate_database(config.database_url)
    stack = Stack(config)
    try:
        return _run(config, stack)
    finally:
        stack.stop_all()
        _allow_connections(config)


def _allow_connections(config: Config) -> None:
    import psycopg

    with psycopg.connect(maintenance_url(config.database_url), autocommit=True) as conn:
        conn.execute(
            f'ALTER DATABASE "{config.database_name}" WITH ALLOW_CONNECTIONS true'
        )


def _run(config: Config, stack: Stack) -> int:
    from devtools.chaos.evidence import gather  # after django.setup()
    from devtools.chaos.faults import Faults
    from devtools.chaos.load import LoadGenerator
    from devtools.chaos.schedule import Injector, plan
    from devtools.chaos.supervisor import Supervisor

    stack.start_broker()
    setup_django(stack)
    stack.manage("migrate", "--noinput", "-v", "0")
    patients, doctors = make_people()
    say(
        f"chaos: {len(patients)} patients, tokens minted in-process (no auth endpoint, no throttle)"
    )
    stack.start_services()
    supervisor = Supervisor(stack, say)
    faults = Faults(stack, supervisor, say)
    load = LoadGenerator(
        base_url=stack.base_url,
        patients=patients,
        doctors=doctors,
        rate=config.rate,
        seed=config.seed,
    )
    injector = Injector(faults, plan(config.seed, config.duration), say)
    started = time.monotonic()
    progress = Progress(load, injector, supervisor, started)
    for part in (supervisor, load, injector, progress):
        part.start()
    while time.monotonic() - started < config.duration or not injector.finished:
        time.sleep(0.5)
    load.stop()
    injector.stop()
    say("chaos: load stopped; waiting for the pipeline to drain")
    drain_s, reached = drain(config.drain_timeout)
    say(f"chaos: drained in {drain_s:.1f} s (each reached zero after: {reached})")
    progress.stop()
    supervisor.stop()
    exit_codes = stack.stop_services()
    ev = gather(stack=stack, load=load, faults=faults, exit_codes=exit_codes)
    return _judge(config, ev, load, injector, supervisor, drain_s)


def _judge(config, ev, load, injector, supervisor, drain_s: float) -> int:
    """The table, the JSON line, the exit code."""
    invariants = verdict.judge(ev)
    ev.duplicates = verdict.email_duplicates(ev)
    counts = injector.counts()
    report.table(
        config=config,
        faults=counts,
        load=load,
        ev=ev,
        invariants=invariants,
        drain_s=drain_s,
        restarts=supervisor.restarts,
        errors=injector.errors,
        say=say,
    )
    result = report.summary(
        faults=counts,
        ev=ev,
        invariants=invariants,
        drain_s=drain_s,
        errors=injector.errors,
    )
    say(report.json_line(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
