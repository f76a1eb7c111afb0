"""Ids bound to every log record logged inside a block (request id, event id).

``healthcare.logging`` formats them; any app binds them with ``log_context``.
"""

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

_context: ContextVar[Mapping[str, str]] = ContextVar(
    "healthcare_log_context", default=MappingProxyType({})
)


@contextmanager
def log_context(**fields) -> Iterator[None]:
    """Add ``fields`` (ids only, never personal data) to every record logged inside."""
    token = _context.set({**_context.get(), **{k: str(v) for k, v in fields.items()}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copy the bound context onto each record (an explicit ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for key, value in context.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        record.log_context = context
        return True
