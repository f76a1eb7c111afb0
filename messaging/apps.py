from django.apps import AppConfig


class MessagingConfig(AppConfig):
    """Installed only for its ``manage.py kafka`` command."""

    name = "messaging"
    verbose_name = "Messaging"
