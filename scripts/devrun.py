"""Run the whole system in the foreground for `make run`: broker, web, relay, consumer.

BROKER=tansu (default: nothing to install but Python) or BROKER=kafka (Apache
Kafka from its Maven jars, data kept in var/kafka); either listens on
127.0.0.1:9092, unless KAFKA_BROKERS names a broker that already runs.
RELAY=poll (default: run_relay) or RELAY=cdc (BROKER=kafka and PostgreSQL with
wal_level=logical: a Kafka Connect worker with Debezium's outbox event router
instead of run_relay; DATABASE_URL, by default a local database of its own). Every
child's output is prefixed with its name. Ctrl-C, SIGTERM or SIGHUP stops them all
(SIGTERM first, then SIGKILL after 10 s; the broker last), and so does make's death; if
one dies, the others stop too.
"""

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

# Who started us, read before the slow imports below (see watch_parent).
PARENT = os.getppid()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from django.core.exceptions import ImproperlyConfigured  # noqa: E402

from core.keys import LOCAL_KEY_FILES, env_key  # noqa: E402
from devtools import connect, kafka_jars  # noqa: E402
from devtools.brokers import client_env  # noqa: E402
from devtools.kafka import KafkaBroker, KafkaUnavailable  # noqa: E402
from devtools.process import (  # noqa: E402
    ProcessFailed,
    death_signal,
    die_with_parent,
    port_open,
)
from devtools.tansu import TansuBroker  # noqa: E402

PY = sys.executable
VAR = ROOT / "var"
BROKER_PORT = 9092
WEB_ADDRESS = "127.0.0.1:8000"  # WEB_ADDRESS= in the environment to change it


def commands_for(env: dict) -> dict:
    return {
        "web": [PY, "manage.py", "runserver", web_address(env), "--noreload"],
        "relay": [PY, "manage.py", "run_relay"],
        "consumer": [PY, "manage.py", "run_consumer"],
    }


def web_address(env: dict) -> str:
    return env.get("WEB_ADDRESS") or WEB_ADDRESS


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(Exception):
    """A stop signal arrived while starting: unwind through main's cleanup."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def stop_starting(signum, frame) -> None:
    raise Stopped(signum)


def on_stop_signals(handler) -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)


def watch_parent() -> None:
    """Under make (MAKELEVEL is set): SIGTERM us if make dies without passing a
    signal on (killed, or a supervisor that signals make alone), so that everything
    below stops with us. Run directly (nohup, a terminal), devrun outlives its parent
    as any program does."""
    if "MAKELEVEL" not in os.environ:
        return
    die_with_parent()
    if os.getppid() != PARENT:  # make died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def manage(*args: str, env) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True)


def main() -> int:
    on_stop_signals(stop_starting)
    watch_parent()
    env = os.environ.copy()
    env.setdefault("DEMO_MODE", "1")
    env.setdefault("DJANGO_DEBUG", "1")
    env.setdefault("KAFKA_SESSION_TIMEOUT_MS", "6000")
    for name, value in client_env(broker_kind(env)).items():
        env.setdefault(name, value)
    env.setdefault("OUTBOX_POLL_INTERVAL_MS", "200")
    env["PYTHONUNBUFFERED"] = "1"
    VAR.mkdir(exist_ok=True)
    cdc = relay_mode(env) == "cdc"
    broker = worker = None
    try:
        broker = start_broker(env)
        manage("migrate", "--noinput", env=env)
        if env["DEMO_MODE"] not in ("0", "false", "no", "off"):
            manage("seed_demo", env=env)
        commands = commands_for(env)
        if cdc:
            manage("kafka", "topics", "create", env=env)
            say(
                "connect: starting Kafka Connect with Debezium (the first run fetches it)"
            )
            worker = connect.devrun_connect(env["KAFKA_BROKERS"], env, VAR / "connect")
            say(f"connect: connector running, REST {worker.url}; no run_relay")
            subprocess.run(  # the connector's state and the slot's retained WAL
                [PY, "manage.py", "outbox_cdc", "status"],
                cwd=ROOT,
                env=env | {"CDC_CONNECT_URL": worker.url},
            )
            del commands["relay"]
        return supervise(env, commands)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    except Stopped as stop:  # Ctrl-C, SIGTERM or SIGHUP while starting
        say("stopping before everything had started")
        return 128 + stop.signum
    finally:
        # A second signal must not cut the cleanup short (the broker stops last).
        on_stop_signals(signal.SIG_IGN)
        if worker is not None:
            worker.stop()
            say(
                "connect: the replication slot stays, so the next run resumes where "
                "this one stopped; meanwhile it keeps the WAL of the whole PostgreSQL "
                "cluster (tests and benches on it write gigabytes). Done with CDC? "
                f"DATABASE_URL={env['DATABASE_URL']} OUTBOX_RELAY=cdc "
                ".venv/bin/python manage.py outbox_cdc teardown drops it."
            )
        if broker is not None:  # last, so that relay and consumer flush and commit
            broker.stop()
        say("stopped")


def relay_mode(env: dict) -> str:
    """RELAY=poll or cdc; cdc points DATABASE_URL at a PostgreSQL ready for it."""
    mode = env.get("RELAY") or "poll"
    if mode not in ("poll", "cdc"):
        sys.exit(f"[make run] RELAY={mode}: expected poll or cdc")
    if mode == "cdc":
        if broker_kind(env) != "kafka" and not env.get("KAFKA_BROKERS"):
            sys.exit("[make run] RELAY=cdc needs Apache Kafka: add BROKER=kafka")
        try:
            env["DATABASE_URL"] = connect.devrun_database_url(env)
            connect.devrun_prepare_database(env["DATABASE_URL"])
        except connect.CDCUnavailable as exc:
            sys.exit(f"[make run] {exc}")
        env["OUTBOX_RELAY"] = "cdc"
        # With DATABASE_URL set the settings want the keys given (a deployment must
        # not run on generated ones); make run gives them the local ones it would use
        # without it, from the same files.
        var = Path(env.get("HEALTHCARE_VAR_DIR") or VAR)
        var.mkdir(exist_ok=True)
        try:
            for name in LOCAL_KEY_FILES:
                env[name] = env_key(name, local=True, var_dir=var)
        except ImproperlyConfigured as exc:
            sys.exit(f"[make run] {exc}")
        say(f"relay: Debezium (cdc mode) on {env['DATABASE_URL']}")
    return mode


def broker_kind(env: dict) -> str:
    return env.get("BROKER") or "tansu"


def start_broker(env: dict):
    """Start the BROKER kind on 127.0.0.1:9092, or use KAFKA_BROKERS when set."""
    kind = broker_kind(env)
    if env.get("KAFKA_BROKERS"):
        say(f"broker: using KAFKA_BROKERS={env['KAFKA_BROKERS']}")
        return None
    if kind not in ("tansu", "kafka"):
        sys.exit(f"[make run] BROKER={kind}: expected tansu or kafka")
    if port_open(BROKER_PORT):
        sys.exit(
            f"[make run] something already listens on 127.0.0.1:{BROKER_PORT}; stop it "
            "or set KAFKA_BROKERS to use it"
        )
    try:
        if kind == "kafka":
            fetch = (
                "" if kafka_jars.cached() else "; fetching its jars with Maven first"
            )
            say(f"broker: starting Apache Kafka{fetch}")
            broker = KafkaBroker(port=BROKER_PORT, data_dir=VAR / "kafka", sasl=False)
            broker.start()
            where = f"data in {broker.data_dir}, log {broker.nodes[0].log_path}"
        else:
            broker = TansuBroker(port=BROKER_PORT, log_path=VAR / "tansu.log").start()
            where = f"memory only, log {broker.log_path}"
    except (ProcessFailed, KafkaUnavailable) as exc:
        sys.exit(f"[make run] the broker did not start: {exc}")
    env["KAFKA_BROKERS"] = broker.address
    say(f"broker: {broker.label} on {broker.address} ({where})")
    return broker


def supervise(env: dict, commands: dict) -> int:
    """Start web, relay and consumer; print their output until a signal or a death."""
    stopping = []
    on_stop_signals(lambda signum, frame: stopping.append(signum))
    children, output, exit_code = {}, None, 0
    try:
        for name, cmd in commands.items():
            if stopping:
                break
            children[name] = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop them in order
                preexec_fn=death_signal(),  # and if we are killed, they stop too
            )
        if stopping:
            return exit_code
        output = Output(children)
        say(
            f"web on http://{web_address(env)} (API /api/, admin /admin/); "
            "Ctrl-C stops all"
        )
        while not stopping:
            output.pump(timeout=0.2)
            dead = [n for n, p in children.items() if p.poll() is not None]
            if dead:
                say(f"{', '.join(dead)} exited; stopping the rest")
                exit_code = 1
                break
    finally:
        stop_all(children)
        if output is not None:
            output.pump(timeout=0)
    return exit_code


class Output:
    """Each child's output, line by line, prefixed with its name."""

    def __init__(self, children: dict):
        self.sel = selectors.DefaultSelector()
        for name, proc in children.items():
            os.set_blocking(proc.stdout.fileno(), False)
            self.sel.register(proc.stdout, selectors.EVENT_READ, name)
        self.width = max(len(n) for n in children)
        self.buffers = {name: b"" for name in children}

    def pump(self, timeout: float) -> None:
        if not self.sel.get_map():
            return
        for key, _ in self.sel.select(timeout=timeout):
            name = key.data
            chunk = key.fileobj.read()
            if not chunk:
                self.sel.unregister(key.fileobj)
                continue
            self.buffers[name] += chunk
            *lines, self.buffers[name] = self.buffers[name].split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                print(f"{name:>{self.width}} | {text}", flush=True)


def stop_all(children: dict) -> None:
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for name, proc in children.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop in 10 s; killing it")
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
