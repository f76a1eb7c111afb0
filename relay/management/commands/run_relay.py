from django.core.management.base import BaseCommand

from core.loops import freeze_startup_heap
from relay.cdc import refuse_poll_relay
from relay.worker import Relay


class Command(BaseCommand):
    help = "Publish pending outbox events to Kafka until stopped (SIGTERM/SIGINT)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--shards",
            type=int,
            help="Shards the keys are split into, each with one leader "
            "(default OUTBOX_SHARDS; the same for every relay of a database).",
        )
        parser.add_argument("--batch-size", type=int, help="Rows claimed per batch.")
        parser.add_argument(
            "--poll-interval", type=float, help="Seconds between polls when idle."
        )
        parser.add_argument(
            "--metrics-port", type=int, help="Serve Prometheus metrics on this port."
        )
        parser.add_argument(
            "--once", action="store_true", help="Drain what is pending, then exit."
        )

    def handle(
        self,
        *args,
        shards=None,
        batch_size=None,
        poll_interval=None,
        metrics_port=None,
        once=False,
        **options,
    ):
        refuse_poll_relay()
        if shards is not None and shards < 1:
            self.stderr.write("--shards must be at least 1")
            raise SystemExit(2)
        if metrics_port is not None:
            from prometheus_client import start_http_server

            from relay.metrics import register_outbox_collector

            register_outbox_collector()
            from django.conf import settings

            start_http_server(metrics_port, addr=settings.METRICS_BIND_ADDRESS)
            self.stdout.write(
                f"metrics on http://{settings.METRICS_BIND_ADDRESS}:{metrics_port}/metrics"
            )
        relay = Relay(
            shards=shards, batch_size=batch_size, poll_interval=poll_interval, once=once
        )
        relay.install_signal_handlers()
        freeze_startup_heap()
        published = relay.run()
        self.stdout.write(f"published {published} events")
