from django.core.management.base import BaseCommand

from audit.models import AuditEntry
from core.times import parse_when

COLUMNS = ("at", "action", "user", "role", "records", "client", "request", "command")


def _row(entry: AuditEntry) -> tuple[str, ...]:
    return (
        entry.at.strftime("%Y-%m-%d %H:%M:%S"),
        entry.action,
        "" if entry.actor_id is None else str(entry.actor_id),
        entry.actor_role,
        f"{entry.record_type} " + " ".join(entry.ids),
        entry.client_ip,
        entry.request_id,
        f"{entry.os_user}: {entry.command}" if entry.command else "",
    )


class Command(BaseCommand):
    help = "Print the audit trail: who saw and changed which record, oldest first."

    def add_arguments(self, parser):
        parser.add_argument("--appointment", help="Only entries naming this record id.")
        parser.add_argument("--user", type=int, help="Only entries by this user id.")
        parser.add_argument("--since", help="From (ISO 8601, or an age like 2h).")
        parser.add_argument(
            "--limit", type=int, default=1000, help="At most this many."
        )

    def handle(self, *args, **options):
        entries = AuditEntry.objects.all()
        if options["appointment"]:
            entries = entries.for_record(options["appointment"])
        if options["user"] is not None:
            entries = entries.filter(actor_id=options["user"])
        if options["since"]:
            entries = entries.filter(at__gte=parse_when("--since", options["since"]))
        rows = [COLUMNS] + [
            _row(e) for e in entries.order_by("at", "pk")[: options["limit"]]
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
        for row in rows:
            line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths))
            self.stdout.write(line.rstrip())
        self.stdout.write(f"({len(rows) - 1} entries)")
