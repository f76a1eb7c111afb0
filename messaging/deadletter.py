"""The dead-letter record format: the original record plus headers saying why.

Written by the consumer, read back by ``dlq_replay``, ``manage.py kafka tail`` and
the admin's pipeline page: the header names live here once.
"""

from datetime import UTC, datetime

PREFIX = "dlq_"  # every header a dead letter carries besides the original ones
ERROR_CLASS = "dlq_error_class"
ERROR_MESSAGE = "dlq_error_message"
ORIGINAL_TOPIC = "dlq_original_topic"
ORIGINAL_PARTITION = "dlq_original_partition"
ORIGINAL_OFFSET = "dlq_original_offset"
TIME = "dlq_time"
REPLAYED_FROM = "dlq_replayed_from"  # on a replayed record: where it was dead-lettered


def dead_letter_headers(msg, error: Exception) -> list[tuple[str, str | bytes]]:
    """The original headers plus where the record came from and why it failed."""
    return list(msg.headers() or []) + [
        (ERROR_CLASS, type(error).__name__),
        (ERROR_MESSAGE, str(error)[:1000]),
        (ORIGINAL_TOPIC, msg.topic()),
        (ORIGINAL_PARTITION, str(msg.partition())),
        (ORIGINAL_OFFSET, str(msg.offset())),
        (TIME, datetime.now(UTC).isoformat()),
    ]


def original_headers(headers) -> list[tuple[str, str | bytes]]:
    """A dead letter's headers without the ones the consumer added."""
    return [(k, v) for k, v in headers or [] if not k.startswith(PREFIX)]


def describe_error(headers: dict[str, str]) -> str:
    """``ErrorClass: message`` from a dead letter's decoded headers."""
    error = headers.get(ERROR_CLASS, "?")
    if headers.get(ERROR_MESSAGE):
        error += f": {headers[ERROR_MESSAGE]}"
    return error
