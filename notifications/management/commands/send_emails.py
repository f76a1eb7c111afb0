from django.core.management.base import BaseCommand

from core.loops import freeze_startup_heap
from notifications.mailer import EmailSender


class Command(BaseCommand):
    help = (
        "Send pending notification emails until stopped (SIGTERM/SIGINT): the email "
        "channel as its own process, for consumers run with --no-email."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size", type=int, help="Deliveries claimed per round."
        )

    def handle(self, *args, batch_size=None, **options):
        sender = EmailSender(batch_size=batch_size)
        sender.install_signal_handlers()
        freeze_startup_heap()
        self.stdout.write("send_emails: started")
        sent = sender.run()
        self.stdout.write(f"sent {sent} emails")
