"""The system under test: database, broker, SMTP sink, web, relays, consumers, sender."""

import os
import shutil
import sys
import time

import requests

from devtools.brokers import client_env, launcher
from devtools.chaos.config import ROOT, Config
from devtools.chaos.smtp import SmtpSink
from devtools.kafka_jars import KafkaUnavailable
from devtools.process import Process, free_port

PY = sys.executable
# application_name of each kind of process, as the database sees it. The relay names
# its own connections (relay/store.py); the others get theirs from libpq's PGAPPNAME.
APP_NAMES = {
    "web": "chaos-web",
    "consumer": "chaos-consumer",
    "emails": "chaos-emails",
    "runner": "chaos-runner",
}
RELAY_APP_PREFIX = "outbox-relay"  # outbox-relay, outbox-relay-mark, -control


def base_env(config: Config, broker_address: str, smtp_port: int) -> dict:
    """The environment every process of the run shares (secrets made for this run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "KAFKA_"))}
    env.update(
        {
            "DATABASE_URL": config.database_url,
            "DJANGO_SECRET_KEY": config.secret,
            "JWT_SIGNING_KEY": config.jwt_key,
            "DJANGO_SETTINGS_MODULE": "healthcare.settings",
            "DJANGO_DEBUG": "0",
            "DEMO_MODE": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "KAFKA_BROKERS": broker_address,
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "OUTBOX_POLL_INTERVAL_MS": "200",
            "OUTBOX_LEASE_TIMEOUT": f"{config.lease_timeout:g}s",
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp_port),
            "EMAIL_TIMEOUT": "5",
            "NOTIFICATION_EMAIL_POLL_INTERVAL_MS": "200",
            "JWT_ACCESS_MINUTES": str(int(config.duration // 60) + 30),
            "LOG_FORMAT": "text",
            "PYTHONUNBUFFERED": "1",
            "PYTHONFAULTHANDLER": "1",  # a crash in C code still shows its Python stack
        }
        | client_env(config.broker)
    )
    return env


class Stack:
    """Every process of the run, by name; the supervisor restarts what dies."""

    def __init__(self, config: Config):
        self.config = config
        config.workdir.mkdir(parents=True, exist_ok=True)
        for old in config.workdir.glob("*.log"):
            old.unlink()
        # a run starts on an empty broker, as on an empty database
        shutil.rmtree(config.workdir / "kafka", ignore_errors=True)
        self.sink = SmtpSink()
        self.broker = launcher(config.broker, config.workdir)
        self.env = base_env(config, self.broker.address, self.sink.port)
        self.web_port = free_port()
        self.procs: dict[str, Process] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def _proc(self, name: str, argv: list[str], app: str | None, **extra) -> Process:
        env = {**self.env, **extra}
        if app:
            env["PGAPPNAME"] = app
        log = self.config.workdir / f"{name}.log"
        self.procs[name] = Process(name, argv, log_path=log, env=env, cwd=ROOT)
        return self.procs[name]

    def manage(self, *args: str, timeout: float = 300) -> None:
        import subprocess

        subprocess.run(
            [PY, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            timeout=timeout,
        )

    def define(self) -> None:
        c = self.config
        gunicorn = [PY, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"]
        self._proc(
            "web",
            [*gunicorn, "healthcare.wsgi:application"],
            APP_NAMES["web"],
            GUNICORN_BIND=f"127.0.0.1:{self.web_port}",
            WEB_CONCURRENCY="2",
            GUNICORN_THREADS="4",
        )
        relay = [PY, "manage.py", "run_relay", "--shards", str(c.shards)]
        relay += ["--batch-size", str(c.relay_batch)]
        for i in range(1, c.relays + 1):
            self._proc(f"relay-{i}", relay, None)
        for i in range(1, c.consumers + 1):
            consumer = [PY, "manage.py", "run_consumer", "--no-email"]
            self._proc(f"consumer-{i}", consumer, f"{APP_NAMES['consumer']}-{i}")
        self._proc("emails", [PY, "manage.py", "send_emails"], APP_NAMES["emails"])

    def start_broker(self) -> None:
        self.sink.start()
        try:
            self.broker.start()
        except KafkaUnavailable as exc:
            raise SystemExit(f"BROKER=kafka: {exc}") from None

    def start_services(self) -> None:
        self.define()
        for proc in self.procs.values():
            proc.start()
        self.wait_web()

    def wait_web(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base_url}/healthz", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            if not self.procs["web"].running:
                break
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer; see {self.procs['web'].log_path}")

    def named(self, prefix: str) -> list[Process]:
        return [p for name, p in sorted(self.procs.items()) if name.startswith(prefix)]

    def by_pid(self, pid: int) -> Process | None:
        return next((p for p in self.procs.values() if p.pid == pid), None)

    def stop_services(self) -> dict[str, int | None]:
        """SIGTERM each (relays and consumers first); their exit codes."""
        order = sorted(self.procs, key=lambda n: (n == "web", n))
        return {name: self.procs[name].stop(grace=15) for name in order}

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop(grace=5)
        self.broker.stop()
        self.sink.stop()
