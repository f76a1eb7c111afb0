"""The web app under gunicorn with the deploy config, as docker-compose runs it."""

import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from devtools.process import free_port, port_open
from tests.conftest import ROOT


@contextmanager
def gunicorn(env: dict, log_path: Path, **settings: str):
    """Serve on a free port with two workers until the block ends; yields the port.

    The server must stop cleanly (exit 0) when the block ends.
    """
    port = free_port()
    env = {
        **env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        **settings,
    }
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "--config",
                "deploy/gunicorn.conf.py",
                "healthcare.wsgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while not port_open(port):
                running = server.poll() is None
                assert running and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            yield port
        finally:
            server.terminate()
            assert server.wait(15) == 0, log_path.read_text()
