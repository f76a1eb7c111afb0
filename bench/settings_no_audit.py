"""Bench-only settings: the project's, with the audit write switched off.

bench/api.py measures what the audit trail costs a booking by starting one gunicorn
with DJANGO_SETTINGS_MODULE=bench.settings_no_audit. Never a deployment's settings
module: nothing a deployment can set turns the audit trail off.
"""

from healthcare.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls_no_audit"
