"""Moved to core.env; this re-export goes when relay is merged (tests/test_relay_units.py)."""

from core.env import parse_duration  # noqa: F401
