"""Log formatting: one JSON object per line when LOG_FORMAT=json, human lines otherwise.

Fields bound with ``log_context`` (the request id in a web request, an event id in
the relay or consumer) appear on every record logged inside it, in both formats.
"""

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
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


def current_context() -> dict[str, str]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Copy the bound context onto each record (an explicit ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for key, value in context.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        record.log_context = context
        return True


def _extras(record: logging.LogRecord) -> dict:
    return {
        k: v
        for k, v in vars(record).items()
        if k not in _STANDARD and k != "log_context"
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger message`` plus ``key=value`` for the ids bound with log_context."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "log_context", None)
        if context:
            line += " " + " ".join(f"{k}={v}" for k, v in context.items())
        return line
