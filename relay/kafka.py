"""Moved to ``messaging``: these re-exports go once relay/ imports messaging."""

from django.conf import settings

from messaging import topics as _topics
from messaging.config import (  # noqa: F401
    admin_config,
    common_config,
    consumer_config,
    producer_config,
)


def ensure_topics(admin, topics: list[str], timeout: float = 10) -> None:
    """The relay's topics, with the relay's partition count (OUTBOX settings)."""
    _topics.ensure_topics(
        topics,
        partitions=settings.OUTBOX["PARTITIONS"],
        replication_factor=settings.OUTBOX["REPLICATION_FACTOR"],
        admin=admin,
        timeout=timeout,
    )
