"""Prometheus metrics of the notification consumer and its email channel.

They live in prometheus_client's default registry of the consumer process, which
``run_consumer --metrics-port`` serves (the email counters with them when the email
thread runs inside run_consumer). The web app's /metrics does not export them: it
reads the pipeline's figures from the database (monitoring.metrics).
"""

from prometheus_client import Counter, Gauge, Histogram

RECORDS = Counter(
    "notifications_consumer_records",
    "Kafka records the consumer processed (applied, skipped or dead-lettered).",
)
EVENTS_APPLIED = Counter(
    "notifications_consumer_events_applied",
    "Events applied for the first time (their notifications were created).",
)
DUPLICATES = Counter(
    "notifications_consumer_duplicates",
    "Records skipped because their event id was already in the inbox.",
)
DEAD_LETTERS = Counter(
    "notifications_consumer_dead_letters",
    "Records sent to the dead-letter topic, by error class.",
    ["error"],
)
NOTIFICATIONS = Counter(
    "notifications_consumer_notifications",
    "In-app notifications created.",
)
TRANSIENT_ERRORS = Counter(
    "notifications_consumer_transient_errors",
    "Batches retried after a transient failure (database unavailable, lock timeout).",
)
BATCH_SECONDS = Histogram(
    "notifications_consumer_batch_duration_seconds",
    "Time to process one batch: parse, write, dead-letter and commit.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENT_DELAY = Histogram(
    "notifications_consumer_event_delay_seconds",
    "Delay from an event's ce_time to the commit of its notifications.",
    buckets=(
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
        30,
        60,
        300,
        3600,
    ),
)
LAG = Gauge(
    "notifications_consumer_lag",
    "Records in the partition after the consumer's position (from fetch responses).",
    ["topic", "partition"],
)
EMAILS_SENT = Counter("notifications_email_sent", "Notification emails sent.")
EMAIL_FAILURES = Counter(
    "notifications_email_failures",
    "Failed email attempts (retried until the attempts run out).",
)
EMAILS_GIVEN_UP = Counter(
    "notifications_email_given_up",
    "Email deliveries marked failed after their last attempt.",
)
