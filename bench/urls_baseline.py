"""The project's URLs, with the booking services' outbox write switched off.

bench/api.py's naive baseline: what the API would cost without events. Loaded only
through bench/settings_baseline.py, in the bench's own gunicorn.
"""

from appointments import services
from healthcare.urls import handler404, urlpatterns  # noqa: F401


def _no_outbox_row(event) -> None:
    """The baseline writes the appointment and nothing else."""


services.enqueue = _no_outbox_row
