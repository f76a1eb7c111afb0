"""What the relay knows of the broker: its failures, the pause they call for, topics."""

import logging
import time

from confluent_kafka import KafkaError
from django.conf import settings

from core.loops import RateLimited, backoff_delay
from messaging.config import admin_client, failure_reason
from messaging.topics import ensure_topics
from relay.metrics import FAILED_ATTEMPTS

logger = logging.getLogger("relay")


class BrokerHealth:
    """Pause after broker failures (0.5 s, 1 s, ... up to 5 s); ensure topics exist."""

    pause_base = 0.5
    pause_cap = 5.0
    log_every = 10.0  # seconds between two "broker unavailable" lines

    def __init__(self, *, admin_timeout: float):
        self.admin_timeout = admin_timeout
        self.failures = 0  # in a row, since the last batch that committed
        self.pause_until = 0.0
        self._log = RateLimited(self.log_every)
        self._admin = None
        self._topics_ready: set[str] = set()

    def paused(self) -> bool:
        return time.monotonic() < self.pause_until

    def failed(self, error, count: int) -> None:
        """The broker refused or lost a transaction of ``count`` events (or a check)."""
        FAILED_ATTEMPTS.labels("broker").inc(count)
        self.failures += 1
        delay = backoff_delay(self.failures, base=self.pause_base, cap=self.pause_cap)
        self.pause_until = time.monotonic() + delay
        self._topics_ready.clear()  # an emptied broker must get its topics back
        self.problem(error)

    def recovered(self) -> None:
        self.failures = 0

    def problem(self, error) -> None:
        if self._log.ready():
            reason = failure_reason(error) if isinstance(error, KafkaError) else error
            logger.warning(
                "relay: broker unavailable or rejecting events, will retry: %s", reason
            )

    def ensure_topics(self, topics: set[str]) -> None:
        """Create the topics not seen since the last broker failure (KafkaException)."""
        missing = topics - self._topics_ready
        if missing:
            if self._admin is None:
                self._admin = admin_client()
            ensure_topics(
                sorted(missing),
                partitions=settings.OUTBOX["PARTITIONS"],
                replication_factor=settings.OUTBOX["REPLICATION_FACTOR"],
                admin=self._admin,
                timeout=self.admin_timeout,
            )
            self._topics_ready |= missing
