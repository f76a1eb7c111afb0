"""System checks for the appointments app."""

from django.conf import settings
from django.core.checks import Warning, register


@register()
def outbox_bench_switch(app_configs, **kwargs):
    """OUTBOX_BENCH_DISABLE belongs to bench/api.py only: with it no event is written."""
    if not settings.OUTBOX_BENCH_DISABLE:
        return []
    return [
        Warning(
            "OUTBOX_BENCH_DISABLE is set: appointment changes write no events.",
            hint="It exists for bench/api.py only; unset it everywhere else.",
            id="appointments.W001",
        )
    ]
