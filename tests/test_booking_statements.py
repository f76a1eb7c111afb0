"""What one booking costs the database: a budget of statements, counted."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.appointment_factories import booking, next_weekday

pytestmark = pytest.mark.django_db

# authenticate, the doctor with its hours, lock + quota, nearby appointments,
# the appointment, its outbox row; then the throttle's counter and the audit entry.
OWN, THROTTLE, AUDIT = 6, 1, 1


def test_a_booking_runs_at_most_its_statement_budget(patient_client, doctor):
    patient_client.post(  # warm: the first request of a client may load more
        "/api/appointments", booking(doctor, next_weekday(), "09:00"), format="json"
    )
    with CaptureQueriesContext(connection) as queries:
        response = patient_client.post(
            "/api/appointments", booking(doctor, next_weekday(), "10:00"), format="json"
        )
    assert response.status_code == 201, response.content
    # The booking's transaction: BEGIN/COMMIT in production, a savepoint here
    # (each test runs inside a transaction of its own).
    transaction = ("BEGIN", "COMMIT", "SAVEPOINT ", "RELEASE SAVEPOINT ")
    statements = [
        q["sql"]
        for q in queries.captured_queries
        if not q["sql"].startswith(transaction)
    ]
    assert len(statements) <= OWN + THROTTLE + AUDIT, "\n".join(statements)
