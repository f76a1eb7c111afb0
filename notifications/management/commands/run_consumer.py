from django.core.management.base import BaseCommand

from notifications.consumer import NotificationConsumer


class Command(BaseCommand):
    help = "Consume appointment events and create notifications until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--group", help="Consumer group (default: CONSUMER_GROUP).")
        parser.add_argument("--batch-size", type=int, help="Records per batch at most.")

    def handle(self, *args, group=None, batch_size=None, **options):
        consumer = NotificationConsumer(group=group, batch_size=batch_size)
        consumer.install_signal_handlers()
        processed = consumer.run()
        self.stdout.write(f"processed {processed} records")
