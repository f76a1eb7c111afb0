"""Kept for imports not yet moved: the stop protocol lives in core.loops."""

from core.loops import StopOnSignal

__all__ = ["StopOnSignal"]
