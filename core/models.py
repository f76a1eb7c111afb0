"""Shared tables: the rate-limit counters every web process counts in."""

from django.db import models


class RateCounter(models.Model):
    """Hits of one client in one throttle scope since ``window_ends - duration``."""

    key = models.CharField(max_length=200, primary_key=True)
    count = models.PositiveIntegerField()
    # Epoch seconds: one float column reads the same on PostgreSQL and SQLite.
    window_ends = models.FloatField(db_index=True)

    class Meta:
        db_table = "core_rate_counter"

    def __str__(self) -> str:
        return f"{self.key}: {self.count}"
