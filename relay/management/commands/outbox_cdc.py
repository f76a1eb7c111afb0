import json

from django.core.management.base import BaseCommand, CommandError

from relay import cdc, handover


class Command(BaseCommand):
    help = (
        "Change data capture with Debezium: print or register the connector, show "
        "its state and the slot's lag, create or drop the publication and slot, "
        "hand the outbox over between run_relay and the connector (README)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "action",
            choices=[
                "config",
                "register",
                "status",
                "setup",
                "teardown",
                "handover-to-cdc",
                "handover-to-poll",
            ],
        )
        parser.add_argument(
            "--connect-url", help="Kafka Connect's REST API (default CDC_CONNECT_URL)."
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=300,
            help="handover-to-cdc: seconds to wait for run_relay to drain.",
        )

    def handle(self, *args, action, connect_url=None, timeout=300, **options):
        try:
            if action == "config":
                self.config()
            elif action == "register":
                cdc.connector_register(connect_url)
                self.stdout.write(
                    f"connector {cdc.settings.CDC['CONNECTOR_NAME']}: registered"
                )
            elif action == "status":
                self.status(connect_url)
            elif action == "setup":
                self.report("created", cdc.cdc_setup())
            elif action == "teardown":
                self.report("dropped", cdc.cdc_teardown())
            elif action == "handover-to-cdc":
                self.handover_to_cdc(timeout)
            else:
                self.handover_to_poll()
        except cdc.CDCError as exc:
            raise CommandError(str(exc)) from None

    def config(self):
        body = {
            "name": cdc.settings.CDC["CONNECTOR_NAME"],
            "config": cdc.connector_config(),
        }
        self.stdout.write(json.dumps(body, indent=2))

    def status(self, connect_url):
        state = cdc.connector_status(connect_url)
        if "error" in state:
            self.stdout.write(f"connector: {state['error']}")
        else:
            tasks = ", ".join(t["state"] for t in state.get("tasks", [])) or "none"
            self.stdout.write(
                f"connector {state['name']}: {state['connector']['state']} "
                f"(tasks: {tasks})"
            )
        slot = cdc.slot_status()
        if slot is None:
            self.stdout.write(
                f"slot {cdc.slot_name()}: missing (run `outbox_cdc setup`)"
            )
            return
        self.stdout.write(
            f"slot {slot['slot']}: {'active' if slot['active'] else 'inactive'}, "
            f"retained {slot['retained_bytes']} B, lag {slot['lag_bytes']} B "
            f"(confirmed {slot['confirmed_flush_lsn']}, "
            f"max {cdc.settings.CDC['MAX_SLOT_LAG_BYTES']} B)"
        )

    def report(self, verb, done):
        for what, changed in done.items():
            self.stdout.write(f"{what}: {verb if changed else 'unchanged'}")

    def handover_to_cdc(self, timeout):
        cdc.cdc_setup()
        seq = handover.wait_polled_before_slot(timeout=timeout)
        self.stdout.write(
            f"every row committed before slot {cdc.slot_name()} is published (seq <= "
            f"{seq}): stop run_relay, set OUTBOX_RELAY=cdc, register the connector"
        )

    def handover_to_poll(self):
        result = handover.handover_to_poll()
        self.stdout.write(
            f"marked {result.marked} rows delivered by the connector as published; "
            f"{result.left} left pending for run_relay"
        )
