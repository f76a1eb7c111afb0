from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Installed for its template (the admin's pipeline page); it has no models."""

    name = "monitoring"
    verbose_name = "Monitoring"
