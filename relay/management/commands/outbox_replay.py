import time

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count
from django.utils import timezone

from audit.trail import audit_command
from core.progress import ProgressBar
from core.times import parse_when
from relay.replay import outbox_replay, outbox_replay_selection


class Command(BaseCommand):
    help = (
        "Republish the published outbox events created in a time range: the relay sends "
        "them again in their original order and consumers skip what they already applied."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since", required=True, help="Start (ISO 8601, or an age like 2h)."
        )
        parser.add_argument(
            "--until", help="End, exclusive (ISO 8601, or an age; default now)."
        )
        parser.add_argument(
            "--aggregate-id", default="", help="Only this aggregate (appointment id)."
        )
        parser.add_argument(
            "--event-type", default="", help="Only this type, e.g. appointment.booked."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be replayed."
        )
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="Do not wait for the relay to republish.",
        )
        parser.add_argument(
            "--batch-size", type=int, default=5000, help="Rows per transaction."
        )
        parser.add_argument(
            "--timeout", type=float, default=600, help="Seconds to wait for the relay."
        )

    def handle(self, *args, **options):
        since = parse_when("--since", options["since"])
        until = (
            parse_when("--until", options["until"])
            if options["until"]
            else timezone.now()
        )
        if since >= until:
            raise CommandError("--since must be before --until")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        selection = outbox_replay_selection(
            since=since,
            until=until,
            aggregate_id=options["aggregate_id"],
            event_type=options["event_type"],
        )
        published = selection.published()
        count = published.count()
        window = f"created {since.isoformat()} .. {until.isoformat()}"
        if options["dry_run"]:
            self.stdout.write(f"would republish {count} events {window}")
            for row in (
                published.values("type").annotate(n=Count("seq")).order_by("type")
            ):
                self.stdout.write(f"  {row['type']}: {row['n']}")
            return
        aggregates = published.values_list("aggregateid", flat=True).distinct()
        audit_command(action="republished", record_type="outbox", record_ids=aggregates)
        bar = ProgressBar("queueing", count, stream=self.stderr)
        queued = outbox_replay(
            events=selection, batch_size=options["batch_size"], on_batch=bar.update
        )
        bar.finish(queued)
        self.stdout.write(f"queued {queued} events {window} for republishing")
        if options["no_wait"] or not queued:
            return
        self._wait_for_relay(selection, queued, options["timeout"])

    def _wait_for_relay(self, selection, queued: int, timeout: float) -> None:
        bar = ProgressBar("republished", queued, stream=self.stderr)
        deadline = time.monotonic() + timeout
        while True:
            left = selection.pending().count()
            bar.update(queued - left)
            if left == 0:
                bar.finish(queued)
                self.stdout.write(f"republished {queued} events")
                return
            if time.monotonic() > deadline:
                bar.finish(queued - left)
                raise CommandError(
                    f"{left} of {queued} events still pending after {timeout:g}s: is a relay running?"
                )
            time.sleep(0.2)
