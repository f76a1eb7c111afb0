from django.core.management.base import BaseCommand, CommandError

from audit.trail import audit_command
from core.progress import ProgressBar
from messaging import deadletter
from notifications.dlq import DeadLetterReplay, ReplayFailed, replay_group


class Command(BaseCommand):
    help = (
        "Send the dead letters not replayed yet back to their original topic "
        "(after the cause is fixed); --dry-run lists them."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List what would be replayed; send nothing.",
        )
        parser.add_argument(
            "--dlq-topic", help="Dead-letter topic (default: CONSUMER_DLQ_TOPIC)."
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=30,
            help="Seconds to read the topic to its end.",
        )

    def handle(self, *args, dry_run=False, dlq_topic=None, timeout=30, **options):
        replay = DeadLetterReplay(
            dlq_topic=dlq_topic, timeout=timeout, progress=ProgressBar("replaying", 0)
        )
        try:
            report = replay.run(dry_run=dry_run)
        except ReplayFailed as exc:
            raise CommandError(str(exc)) from None
        records = report.records
        self.stdout.write(
            f"{len(records)} dead letter(s) in {replay.dlq_topic} not replayed yet "
            f"(group {replay_group()})"
        )
        for (topic, error), count in sorted(report.by_topic_and_error().items()):
            self.stdout.write(f"  {count:>6}  -> {topic:<30} {error}")
        if dry_run:
            for r in records[:20]:
                self.stdout.write(
                    f"  {replay.dlq_topic}[{r.partition}]@{r.offset}: {r.error}"
                )
            if len(records) > 20:
                self.stdout.write(f"  ... and {len(records) - 20} more")
            self.stdout.write("dry run: nothing sent")
            return
        if report.skipped:
            self.stdout.write(
                f"skipped {report.skipped} without a {deadletter.ORIGINAL_TOPIC} header"
            )
        audit_command(
            action="replayed",
            record_type="dead_letter",
            record_ids=[f"{r.partition}@{r.offset}" for r in records],
        )
        self.stdout.write(f"replayed {report.replayed} dead letter(s)")
