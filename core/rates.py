"""Rates such as ``20/minute``: parsed once, read from the environment at start."""

import os
import re

from django.core.exceptions import ImproperlyConfigured

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"([1-9][0-9]*)/(s|sec|second|m|min|minute|h|hour|d|day)")


def parse_rate(rate: str) -> tuple[int, int]:
    """``"20/minute"`` -> ``(20, 60)``: requests allowed, per this many seconds."""
    match = _RATE.fullmatch(rate.strip())
    if not match:
        raise ValueError(f"{rate!r} is not a rate like 20/minute")
    return int(match[1]), _PERIODS[match[2][0]]


def env_rate(name: str, default: str) -> str:
    """A rate from the environment, refused at start when malformed."""
    raw = os.environ.get(name, "").strip() or default
    try:
        parse_rate(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}.") from None
    return raw
