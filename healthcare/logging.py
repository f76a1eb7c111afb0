"""Log formatting: one JSON object per line when LOG_FORMAT=json, human lines otherwise.

Ids bound with ``core.logcontext.log_context`` (the request id of a web request, the
event id a relay or consumer line is about) are copied onto each record by
``ContextFilter`` and written by both formatters: as fields in JSON, as
``key=value`` at the end of a text line.
"""

import json
import logging
from datetime import UTC, datetime

# Re-exported: settings' LOGGING names the filter here.
from core.logcontext import ContextFilter  # noqa: F401

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


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
