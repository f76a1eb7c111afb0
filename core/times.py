"""Points in time given on a command line: ISO 8601, or an age such as ``2h``."""

from datetime import datetime, timedelta

from django.core.management.base import CommandError
from django.utils import dateparse, timezone

from core.env import parse_duration


def parse_when(option: str, raw: str) -> datetime:
    """An ISO 8601 date or datetime (default time zone unless given), or an age."""
    value = dateparse.parse_datetime(raw)
    if value is None:
        day = dateparse.parse_date(raw)
        value = datetime(day.year, day.month, day.day) if day else None
    if value is None:
        try:
            return timezone.now() - timedelta(seconds=parse_duration(raw))
        except ValueError:
            raise CommandError(
                f"{option}: {raw!r} is neither an ISO 8601 date/datetime "
                "nor an age like 2h"
            ) from None
    if timezone.is_naive(value):
        return timezone.make_aware(value, timezone.get_default_timezone())
    return value
