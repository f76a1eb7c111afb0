"""The database refuses or drops connections: the API answers 503, never 500 (issue 11).

Found by the chaos suite: a refused connection made the API answer 500. Here the
database really refuses new connections (ALLOW_CONNECTIONS false, every session of it
ended) while a live server answers over HTTP.
"""

import contextlib
import json
import logging
import urllib.error
import urllib.request

import psycopg
import pytest
from django.db import connection
from rest_framework_simplejwt.tokens import RefreshToken

from core.logcontext import ContextFilter, log_context
from tests.appointment_factories import next_weekday

pytestmark = pytest.mark.django_db(transaction=True)


@contextlib.contextmanager
def database_refusing_connections():
    """New sessions of the test database refused and its open ones ended, restored after."""
    s = connection.settings_dict
    name = s["NAME"]
    admin = psycopg.connect(
        host=s.get("HOST") or "127.0.0.1",
        port=s.get("PORT") or 5432,
        user=s["USER"],
        password=s.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )
    quoted = psycopg.sql.Identifier(name)
    try:
        admin.execute(
            psycopg.sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                quoted
            )
        )
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        yield
    finally:
        admin.execute(
            psycopg.sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                quoted
            )
        )
        admin.close()
        connection.close()  # this test's own session was ended too


def http(method: str, url: str, *, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


@pytest.fixture
def context_caplog(caplog):
    """caplog whose records carry the bound ids (request id), like the real handlers."""
    caplog.handler.addFilter(ContextFilter())
    caplog.set_level(logging.INFO)
    return caplog


def unavailable_records(caplog):
    return [r for r in caplog.records if "database unavailable" in r.getMessage()]


@pytest.mark.postgres_only
def test_booking_while_the_database_refuses_connections_answers_503(
    live_server, patient, doctor, context_caplog
):
    bearer = f"Bearer {RefreshToken.for_user(patient).access_token}"
    body = {
        "doctorId": doctor.id,
        "date": next_weekday().isoformat(),
        "timeSlot": "10:00",
    }
    headers = {"Authorization": bearer, "X-Request-ID": "req-db-refused-1"}

    with database_refusing_connections():
        status, response_headers, text = http(
            "POST", f"{live_server.url}/api/appointments", body=body, headers=headers
        )

    assert status == 503, text
    assert response_headers["Content-Type"] == "application/json"
    assert int(response_headers["Retry-After"]) > 0
    assert json.loads(text) == {
        "detail": "The database is unavailable; retry in a few seconds."
    }
    assert "accepting connections" not in text and "Traceback" not in text
    [record] = unavailable_records(context_caplog)
    assert record.request_id == "req-db-refused-1"
    assert not [r for r in context_caplog.records if r.name == "django.request"]
    # and once the database is back, the same request books
    status, _, text = http(
        "POST", f"{live_server.url}/api/appointments", body=body, headers=headers
    )
    assert status == 201, text


@pytest.mark.postgres_only
def test_session_lookup_in_middleware_while_refused_answers_503_not_500(
    live_server, context_caplog
):
    # A session cookie makes the auth middleware read the session table: the error
    # comes from outside any DRF view and reaches Django's 500 handler.
    headers = {"Cookie": "sessionid=abcdefghijklmnopqrstuvwxyz012345"}

    with database_refusing_connections():
        status, response_headers, text = http(
            "GET", f"{live_server.url}/admin/login/", headers=headers
        )

    assert status == 503, text
    assert int(response_headers["Retry-After"]) > 0
    assert "accepting connections" not in text and "Traceback" not in text
    assert len(unavailable_records(context_caplog)) == 1


def test_django_500_handler_answers_json_503_under_api_for_a_database_error(rf):
    from django.db import OperationalError

    from core.api import server_error

    request = rf.get("/api/doctors")
    with log_context(request_id="req-2"):
        try:
            raise OperationalError(
                'database "x" is not currently accepting connections'
            )
        except OperationalError:
            response = server_error(request)
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "5"
    assert b"accepting" not in response.content


def test_django_500_handler_answers_json_500_under_api_for_other_errors(rf):
    from core.api import server_error

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        response = server_error(rf.get("/api/doctors"))
    assert response.status_code == 500
    assert json.loads(response.content) == {
        "detail": "Internal error; it has been logged."
    }
