"""/readyz and /metrics stay cheap with a big inbox: bounded queries, cached totals.

Prints how long each answer takes on PostgreSQL with 200,000 inbox rows (and as
many published outbox rows, spread over two days); the numbers are information,
not assertions (timings belong to bench/). The answers themselves are checked.
"""

import time

import pytest
from django.db import connection

from monitoring.selectors import clear_cache
from notifications.models import ProcessedEvent
from relay.models import OutboxEvent
from tests.test_ops_web import metric

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

ROWS = 200_000
PENDING = 5


def fill(rows: int) -> None:
    """``rows`` published and consumed events, plus a few pending ones, in SQL."""
    outbox, inbox = OutboxEvent._meta.db_table, ProcessedEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {outbox} (id, aggregatetype, aggregateid, type, topic, key,
                payload, headers, bucket, created_at, published_at, partition,
                "offset", attempts, last_error)
            SELECT gen_random_uuid(), 'appointment', i::text, 'appointment.booked',
                'appointments', i::text, '{{}}', '{{}}', 0,
                now() - (i * interval '864 milliseconds') - interval '1 second',
                CASE WHEN i <= %s THEN NULL
                     ELSE now() - (i * interval '864 milliseconds') END,
                0, i, 0, ''
            FROM generate_series(1, %s) AS i
            """,
            [PENDING, rows + PENDING],
        )
        cursor.execute(
            f"""
            INSERT INTO {inbox} (event_id, event_type, topic, partition, "offset",
                processed_at)
            SELECT id, type, topic, 0, "offset", published_at + interval '50 ms'
            FROM {outbox} WHERE published_at IS NOT NULL
            """
        )
        cursor.execute(f"ANALYZE {outbox}; ANALYZE {inbox}")


def timed_get(client, path: str):
    started = time.perf_counter()
    response = client.get(path)
    return response, (time.perf_counter() - started) * 1000


def test_readyz_and_metrics_with_200k_inbox_rows(client, broker, settings):
    settings.HEALTH = {**settings.HEALTH, "FIGURES_CACHE_S": 5}
    fill(ROWS)
    clear_cache()
    try:
        ready, ready_ms = timed_get(client, "/readyz")
        cold, cold_ms = timed_get(client, "/metrics")
        warm, warm_ms = timed_get(client, "/metrics")
        again, again_ms = timed_get(client, "/readyz")
    finally:
        clear_cache()
    print(
        f"\n{ROWS:,} inbox rows on PostgreSQL: /readyz {ready_ms:.1f} ms (first: new "
        f"broker connection), then "
        f"{again_ms:.1f} ms; /metrics {cold_ms:.1f} ms (totals counted), "
        f"{warm_ms:.1f} ms (totals cached)"
    )
    assert ready.status_code == 200, ready.content
    body = ready.json()
    assert body["relay"]["pending_events"] == PENDING
    assert body["consumer"]["published_not_consumed_last_hour"] == 0
    assert body["consumer"]["last_processed_age_seconds"] < 60
    for text in (cold.content.decode(), warm.content.decode()):
        assert metric(text, "healthcare_inbox_processed_events") == ROWS
        assert metric(text, "healthcare_outbox_pending_events") == PENDING
        assert metric(text, "healthcare_events_published_not_consumed") == 0
    assert again.status_code == 200
