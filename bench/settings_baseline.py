"""Bench-only settings: the project's, serving the baseline URL conf of bench/api.py.

Never a deployment's settings module: bench/api.py starts its baseline gunicorn
with DJANGO_SETTINGS_MODULE=bench.settings_baseline. Nothing a deployment can set
turns off "no change without its event".
"""

from healthcare.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls_baseline"
