"""The pipeline's settings: Kafka clients, the outbox relay, change data capture,
the consumer and its email channel, the notification side's retention.

Read from the environment here and imported by healthcare/settings.py (which stays
the one settings module); nothing else imports this file.
"""

from django.core.exceptions import ImproperlyConfigured

from core.env import (
    env_bool,
    env_brokers,
    env_choice,
    env_duration,
    env_int,
    env_list,
    env_str,
)

# Kafka: one place for every client's connection settings (see messaging/config.py).
KAFKA = {
    "BROKERS": env_brokers("KAFKA_BROKERS", "127.0.0.1:9092"),
    "SECURITY_PROTOCOL": env_choice(
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    ),
    "SASL_MECHANISM": env_choice(
        "KAFKA_SASL_MECHANISM",
        "PLAIN",
        ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"),
    ),
    "SASL_USERNAME": env_str("KAFKA_SASL_USERNAME"),
    "SASL_PASSWORD": env_str("KAFKA_SASL_PASSWORD"),
    "SSL_CA_LOCATION": env_str("KAFKA_SSL_CA_LOCATION"),
    "CLIENT_ID": env_str("KAFKA_CLIENT_ID", "healthcare"),
    "LINGER_MS": env_int("KAFKA_LINGER_MS", 5, minimum=0),
    "BATCH_SIZE": env_int("KAFKA_BATCH_SIZE", 1_000_000, minimum=1),
    "COMPRESSION": env_choice(
        "KAFKA_COMPRESSION", "lz4", ("none", "gzip", "snappy", "lz4", "zstd")
    ),
    "SESSION_TIMEOUT_MS": env_int("KAFKA_SESSION_TIMEOUT_MS", 45_000, minimum=1000),
    "FETCH_WAIT_MAX_MS": env_int("KAFKA_FETCH_WAIT_MAX_MS", 500, minimum=0),
    "MESSAGE_TIMEOUT_MS": env_int("KAFKA_MESSAGE_TIMEOUT_MS", 30_000, minimum=1000),
    # New topics (created by the relay, the consumer and `manage.py kafka`).
    "TOPIC_PARTITIONS": env_int("KAFKA_TOPIC_PARTITIONS", 3, minimum=1),
    "TOPIC_REPLICATION_FACTOR": env_int("KAFKA_REPLICATION_FACTOR", 1, minimum=1),
    # retention.ms of the topics the project creates (events, and the dead letters).
    "TOPIC_RETENTION_MS": int(env_duration("KAFKA_TOPIC_RETENTION", "7d") * 1000),
    "DLQ_RETENTION_MS": int(env_duration("KAFKA_DLQ_RETENTION", "30d") * 1000),
}
# How long an open relay transaction may hold read_committed readers of its
# partitions back when its relay dies and no standby fences it (README, "Relay").
# Default: Kafka's 60 s, and always longer than a delivery may take.
KAFKA["TRANSACTION_TIMEOUT_MS"] = env_int(
    "KAFKA_TRANSACTION_TIMEOUT_MS",
    max(60_000, KAFKA["MESSAGE_TIMEOUT_MS"] + 10_000),
    minimum=1000,
)
if KAFKA["TRANSACTION_TIMEOUT_MS"] < KAFKA["MESSAGE_TIMEOUT_MS"]:
    raise ImproperlyConfigured(
        "KAFKA_TRANSACTION_TIMEOUT_MS must be at least KAFKA_MESSAGE_TIMEOUT_MS "
        f"({KAFKA['MESSAGE_TIMEOUT_MS']}): a transaction outlives its deliveries."
    )
if KAFKA["SECURITY_PROTOCOL"].startswith("SASL") and not KAFKA["SASL_USERNAME"]:
    raise ImproperlyConfigured(
        "KAFKA_SASL_USERNAME is required when KAFKA_SECURITY_PROTOCOL uses SASL."
    )

# Outbox and relay.
OUTBOX = {
    "TOPIC_PREFIX": env_str("OUTBOX_TOPIC_PREFIX"),
    # aggregate type -> topic
    "TOPICS": {"appointment": env_str("OUTBOX_APPOINTMENT_TOPIC", "appointments")},
    "PARTITIONS": KAFKA["TOPIC_PARTITIONS"],
    "REPLICATION_FACTOR": KAFKA["TOPIC_REPLICATION_FACTOR"],
    # Relays split the keys into this many shards, each with one publishing leader
    # (a relay setting: every relay of one database must use the same count).
    "SHARDS": env_int("OUTBOX_SHARDS", 1, minimum=1),
    "BATCH_SIZE": env_int("OUTBOX_BATCH_SIZE", 5000, minimum=1),
    "POLL_INTERVAL_MS": env_int("OUTBOX_POLL_INTERVAL_MS", 1000, minimum=10),
    "MAX_BACKOFF_S": env_int("OUTBOX_MAX_BACKOFF_S", 300, minimum=1),
    # Published rows older than this are purged (outbox_purge, and by the relay).
    "RETENTION_S": env_duration("OUTBOX_RETENTION", "7d"),
    "PURGE_INTERVAL_S": env_duration("OUTBOX_PURGE_INTERVAL", "10m"),
    "PURGE_BATCH_SIZE": env_int("OUTBOX_PURGE_BATCH_SIZE", 5000, minimum=1),
    # A leader that cannot reach PostgreSQL for this long loses its shards.
    "LEASE_TIMEOUT_S": env_duration("OUTBOX_LEASE_TIMEOUT", "5s"),
    # Prefix of the per-shard Kafka transactional.id (default: client id + database).
    "TRANSACTIONAL_ID": env_str("OUTBOX_TRANSACTIONAL_ID"),
}

# Change data capture: Debezium's outbox event router instead of run_relay.
# OUTBOX_RELAY=cdc: rows stay in the table (retention removes them by age) and
# run_relay refuses to start; `manage.py outbox_cdc` configures the connector.
OUTBOX_RELAY = env_choice("OUTBOX_RELAY", "poll", ("poll", "cdc"))
CDC = {
    # Slots are per cluster, publications per database (default: one per database).
    "SLOT_NAME": env_str("CDC_SLOT_NAME"),
    "PUBLICATION": env_str("CDC_PUBLICATION", "healthcare_outbox"),
    "CONNECTOR_NAME": env_str("CDC_CONNECTOR_NAME", "healthcare-outbox"),
    "CONNECT_URL": env_str("CDC_CONNECT_URL", "http://127.0.0.1:8083"),
    # Debezium's topic.prefix: names its heartbeat topic and its offsets.
    "TOPIC_PREFIX": env_str("CDC_TOPIC_PREFIX", "healthcare"),
    # The database as the Connect worker reaches it (default: DATABASE_URL's).
    "DATABASE_HOST": env_str("CDC_DATABASE_HOST"),
    "DATABASE_PORT": env_int("CDC_DATABASE_PORT", 0, minimum=0),
    "HEARTBEAT_MS": env_int("CDC_HEARTBEAT_MS", 10_000, minimum=0),
    # How long Debezium waits to fill a batch (its default, 500, is a latency floor).
    "POLL_INTERVAL_MS": env_int("CDC_POLL_INTERVAL_MS", 50, minimum=1),
    # /readyz fails when the slot holds more WAL than this for the connector.
    "MAX_SLOT_LAG_BYTES": env_int("CDC_MAX_SLOT_LAG_BYTES", 1 << 30, minimum=1),
}

# Notification consumer.
CONSUMER = {
    "GROUP": env_str("CONSUMER_GROUP", "notification-service-group"),
    "TOPICS": env_list("CONSUMER_TOPICS", "appointments"),
    "DLQ_TOPIC": env_str("CONSUMER_DLQ_TOPIC", "appointments.dlq"),
    "BATCH_SIZE": env_int("CONSUMER_BATCH_SIZE", 500, minimum=1),
    "BATCH_TIMEOUT_MS": env_int("CONSUMER_BATCH_TIMEOUT_MS", 100, minimum=1),
}

# The topics `manage.py kafka topics create` makes by default, wired here so that
# messaging/ reads no app's settings: the relay's, the consumer's, dead letters.
KAFKA["PROJECT_TOPICS"] = list(
    dict.fromkeys(
        [OUTBOX["TOPIC_PREFIX"] + t for t in OUTBOX["TOPICS"].values()]
        + CONSUMER["TOPICS"]
        + [CONSUMER["DLQ_TOPIC"]]
    )
)

# Notification email channel (sent by run_consumer's email thread, with retries).
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30, minimum=1)
# How long a claimed delivery waits before another sender may take it (a sender
# killed mid-send): longer than a round of sending, at most a day.
EMAIL_LEASE_SECONDS = env_int("EMAIL_LEASE_SECONDS", 300, minimum=1, maximum=86400)
NOTIFICATION_EMAIL = {
    "ENABLED": env_bool("NOTIFICATION_EMAIL_ENABLED", True),
    "BATCH_SIZE": env_int("NOTIFICATION_EMAIL_BATCH_SIZE", 100, minimum=1),
    "MAX_ATTEMPTS": env_int("NOTIFICATION_EMAIL_MAX_ATTEMPTS", 5, minimum=1),
    "RETRY_SECONDS": env_int("NOTIFICATION_EMAIL_RETRY_SECONDS", 30, minimum=1),
    "POLL_INTERVAL_MS": env_int(
        "NOTIFICATION_EMAIL_POLL_INTERVAL_MS", 1000, minimum=10
    ),
}
# How long the notification side keeps its rows (notifications_purge deletes older).
NOTIFICATION_RETENTION = {
    "NOTIFICATIONS_S": env_duration("NOTIFICATION_RETENTION", "365d"),
    "EMAIL_DELIVERIES_S": env_duration("EMAIL_DELIVERY_RETENTION", "90d"),
    # At least the topic's retention: a replay of any record still in the topic must
    # find its inbox row, or it would notify twice.
    "INBOX_S": env_duration("INBOX_RETENTION", "30d"),
}
if NOTIFICATION_RETENTION["INBOX_S"] * 1000 < KAFKA["TOPIC_RETENTION_MS"]:
    raise ImproperlyConfigured(
        "INBOX_RETENTION must be at least KAFKA_TOPIC_RETENTION, or a replay of the "
        "topic would notify twice."
    )
