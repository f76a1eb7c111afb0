"""`make test`: run the suite on PostgreSQL (when reachable) and on SQLite.

PostgreSQL: TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/healthcare.
The SQLite run leaves out the tests marked postgres_only (row and advisory locks,
LISTEN/NOTIFY). Extra arguments go to pytest.
"""

import os
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

PG_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/healthcare")


def reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 5432), timeout=2):
            return True
    except OSError:
        return False


def run(label: str, database_url: str, extra: list[str]) -> int:
    env = os.environ.copy()
    env.update(
        {
            "DATABASE_URL": database_url,
            "DJANGO_SECRET_KEY": "test-secret-key-that-is-long-enough-for-hs256-and-django",
            "JWT_SIGNING_KEY": "test-jwt-signing-key-of-fifty-characters-or-more-for-hs256",
            "DJANGO_DEBUG": "0",
            "DEMO_MODE": "0",
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "KAFKA_FETCH_WAIT_MAX_MS": "10",
            "OUTBOX_POLL_INTERVAL_MS": "100",
            "LOG_FORMAT": "text",
            # production settings (DEBUG off) but plain HTTP inside the test process
            "DJANGO_SECURE_SSL_REDIRECT": "0",
        }
    )
    print(f"\n=== tests on {label} ===", flush=True)
    started = time.monotonic()
    code = subprocess.call([sys.executable, "-m", "pytest", *extra], env=env)
    print(f"=== {label}: exit {code} in {time.monotonic() - started:.0f}s ===", flush=True)
    return code


def main() -> int:
    extra = sys.argv[1:]
    codes = []
    if reachable(PG_URL):
        codes.append(run("PostgreSQL", PG_URL, extra))
    else:
        print(f"PostgreSQL not reachable at {PG_URL}: running on SQLite only", flush=True)
    codes.append(run("SQLite", "sqlite:///var/healthcare-test.sqlite3", ["-m", "not postgres_only", *extra]))
    # pytest exits 5 when no test ran: that is a failure here too.
    return next((c for c in codes if c != 0), 0)


if __name__ == "__main__":
    sys.exit(main())
