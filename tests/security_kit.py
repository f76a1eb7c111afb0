"""Helpers for the security tests: tokens, a subprocess on the test database, Redis."""

import os
import shutil
import subprocess
import sys
import time

import pytest
from rest_framework.test import APIClient

from tests.broker import free_port, port_open
from tests.conftest import PASSWORD, ROOT, database_url


def token_pair(user, client: APIClient | None = None) -> dict:
    """A real access and refresh token from /api/auth/token."""
    response = (client or APIClient()).post(
        "/api/auth/token",
        {"username": user.username, "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``manage.py args`` in a subprocess on the test database."""
    full = os.environ.copy()
    full.update({"DATABASE_URL": database_url(), **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def redis_url():
    """A real redis-server on a free port (Debian's redis-server package)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server here: apt-get install -y redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not port_open(port):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
