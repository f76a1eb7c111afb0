"""The project's URLs, with the audit trail's write switched off (bench/api.py only).

Loaded only through bench/settings_no_audit.py, in the bench's own gunicorn.
"""

from audit import trail
from healthcare.urls import handler404, urlpatterns  # noqa: F401


def _no_entry(**kwargs) -> None:
    """The variant writes the booking and its event, and no audit entry."""


trail.audit_record = _no_entry
