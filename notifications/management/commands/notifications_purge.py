from django.core.management.base import BaseCommand

from notifications.retention import notifications_purge


class Command(BaseCommand):
    help = (
        "Delete notifications, inbox rows and email deliveries older than their "
        "retention (NOTIFICATION_RETENTION, INBOX_RETENTION, EMAIL_DELIVERY_RETENTION)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=5000)

    def handle(self, *args, batch_size=5000, **options):
        for what, count in notifications_purge(batch_size=batch_size).items():
            self.stdout.write(f"deleted {count} {what}")
