"""Pipeline figures over the apps, the admin pipeline page, /metrics and the probes.

Nothing imports monitoring but ``healthcare.urls``.
"""
