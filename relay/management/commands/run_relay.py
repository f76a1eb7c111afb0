from django.core.management.base import BaseCommand

from relay.worker import Relay


class Command(BaseCommand):
    help = "Publish pending outbox events to Kafka until stopped (SIGTERM/SIGINT)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, help="Rows claimed per batch.")
        parser.add_argument(
            "--poll-interval", type=float, help="Seconds between polls when idle."
        )
        parser.add_argument(
            "--once", action="store_true", help="Drain what is pending, then exit."
        )

    def handle(self, *args, batch_size=None, poll_interval=None, once=False, **options):
        relay = Relay(batch_size=batch_size, poll_interval=poll_interval, once=once)
        relay.install_signal_handlers()
        published = relay.run()
        self.stdout.write(f"published {published} events")
