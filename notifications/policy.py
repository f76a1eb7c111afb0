"""The consumer's error policy and the batch it applies to."""

import enum
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from core.db import DATABASE_UNAVAILABLE
from core.loops import backoff_delay
from notifications.records import DeadLetter, ParsedEvent


class Decision(enum.Enum):
    RETRY = "retry"
    DEAD_LETTER = "dead-letter"


class ErrorPolicy:
    """The consumer's one error policy: what a failure while applying records means.

    - retry (transient): the database is unreachable or restarting, a lock or
      statement timed out, a deadlock, the schema is not migrated yet. The consumer
      pauses its partitions, keeps polling (so it stays in the group), and retries
      the same records with backoff; no offset moves past them.
    - dead-letter (permanent): the record itself is wrong: not JSON, missing
      CloudEvents headers, unknown type, invalid data, a handler error, a constraint
      it violates. It goes to the dead-letter topic and the batch's good records
      commit.

    A failure of a whole batch that is not transient is narrowed down by applying
    the records one by one, so only the guilty record is dead-lettered.
    """

    TRANSIENT = DATABASE_UNAVAILABLE

    @classmethod
    def decide(cls, exc: Exception) -> Decision:
        if isinstance(exc, cls.TRANSIENT):
            return Decision.RETRY
        return Decision.DEAD_LETTER

    @staticmethod
    def backoff(attempt: int) -> float:
        """0.2 s, 0.4 s, 0.8 s, ... capped at 30 s."""
        return backoff_delay(attempt, base=0.2, cap=30.0)


@dataclass
class Batch:
    """Records in hand: parsed, maybe being written, not yet committed."""

    records: list
    events: list[ParsedEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    write: Future | None = None
