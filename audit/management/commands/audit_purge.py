from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from audit.models import AuditEntry


class Command(BaseCommand):
    help = "Delete audit entries older than AUDIT_RETENTION (default 6 years)."

    def handle(self, *args, **options):
        before = timezone.now() - timedelta(seconds=settings.AUDIT_RETENTION_S)
        deleted = AuditEntry.objects.purge(before=before)
        self.stdout.write(
            f"deleted {deleted} audit entries older than {before:%Y-%m-%d}"
        )
