import argparse
import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from prometheus_client import start_http_server

from core.loops import freeze_startup_heap
from messaging.reset import (
    GroupHasMembers,
    OffsetResetFailed,
    group_offsets_reset,
    parse_reset_target,
    reset_lines,
)
from notifications.consumer import NotificationConsumer
from notifications.mailer import EmailSender

logger = logging.getLogger("notifications")


class Command(BaseCommand):
    help = (
        "Consume appointment events and create notifications until stopped; "
        "or, with --reset-offsets, move the group's committed offsets and exit."
    )

    def add_arguments(self, parser):
        parser.add_argument("--group", help="Consumer group (default: CONSUMER_GROUP).")
        parser.add_argument("--batch-size", type=int, help="Records per batch at most.")
        parser.add_argument(
            "--metrics-port",
            type=int,
            help="Serve Prometheus metrics on this port (all interfaces).",
        )
        parser.add_argument(
            "--email",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Send notification emails from a background thread "
            "(default: NOTIFICATION_EMAIL_ENABLED, on).",
        )
        parser.add_argument(
            "--reset-offsets",
            metavar="earliest|latest|DATETIME",
            help="Commit the group's offsets for its topics at the earliest or latest "
            "record, or the first record at or after an ISO 8601 time; then exit.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="With --reset-offsets: do not refuse a group with live members; retry "
            "until the broker accepts (once the members have left or timed out).",
        )

    def handle(self, *args, group=None, batch_size=None, reset_offsets=None, **options):
        group = group or settings.CONSUMER["GROUP"]
        if reset_offsets:
            return self.reset(group, reset_offsets, force=options["force"])
        if options["metrics_port"]:
            start_http_server(
                options["metrics_port"], addr=settings.METRICS_BIND_ADDRESS
            )
            logger.info("consumer: metrics on port %d", options["metrics_port"])
        email = options["email"]
        if email is None:
            email = settings.NOTIFICATION_EMAIL["ENABLED"]
        sender = EmailSender() if email else None
        consumer = NotificationConsumer(
            group=group,
            batch_size=batch_size,
            on_applied=sender.wake if sender else None,
        )
        consumer.install_signal_handlers()
        freeze_startup_heap()
        if sender:
            sender.start_thread()
        try:
            processed = consumer.run()
        finally:
            if sender:
                sender.stop()
        self.stdout.write(f"processed {processed} records")

    def reset(self, group: str, text: str, *, force: bool) -> None:
        """The same reset as ``kafka groups reset-offsets``, on the consumer's topics."""
        try:
            target = parse_reset_target(text)
        except ValueError as exc:
            raise CommandError(f"--reset-offsets: {exc}") from None
        topics = settings.CONSUMER["TOPICS"]
        try:
            resets = group_offsets_reset(
                group=group, topics=topics, target=target, force=force
            )
        except (GroupHasMembers, OffsetResetFailed) as exc:
            raise CommandError(str(exc)) from None
        for line in reset_lines(group, target, resets):
            self.stdout.write(line)
