from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.env import parse_duration
from core.progress import ProgressBar
from relay.retention import outbox_purge, outbox_purgeable


class Command(BaseCommand):
    help = "Delete published outbox rows older than the retention period, in bounded batches."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            help="Retention, e.g. 7d, 36h, 90m (default OUTBOX_RETENTION).",
        )
        parser.add_argument(
            "--batch-size", type=int, help="Rows deleted per transaction."
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be deleted, delete nothing.",
        )

    def handle(self, *args, older_than=None, batch_size=None, dry_run=False, **options):
        try:
            seconds = (
                parse_duration(older_than)
                if older_than
                else settings.OUTBOX["RETENTION_S"]
            )
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}") from None
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        count = outbox_purgeable(older_than=seconds).count()
        age = older_than or f"{seconds:g}s"
        if dry_run:
            self.stdout.write(f"would purge {count} published events older than {age}")
            return
        bar = ProgressBar("purging", count, stream=self.stderr)
        deleted = outbox_purge(
            older_than=seconds, batch_size=batch_size, on_batch=bar.update
        )
        bar.finish(deleted)
        self.stdout.write(f"purged {deleted} published events older than {age}")
