from datetime import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from appointments.models import Doctor, Weekday
from appointments.services import doctor_set_working_hours

DEMO_PASSWORD = "healthcare-demo"
# The demo doctor's week: Monday to Friday, 09:00 to 17:00, 30-minute slots.
DEMO_HOURS = {
    "weekdays": range(Weekday.MONDAY, Weekday.FRIDAY + 1),
    "start": time(9),
    "end": time(17),
}


class Command(BaseCommand):
    help = "Create the demo users and doctor (DEMO_MODE only); safe to run again."

    @transaction.atomic
    def handle(self, *args, **options):
        if not settings.DEMO_MODE:
            raise CommandError(
                "seed_demo only runs with DEMO_MODE=1 (it sets known passwords)."
            )
        User = get_user_model()
        users = {}
        for username, staff in (("alice", False), ("dr-smith", False), ("admin", True)):
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(DEMO_PASSWORD)
                user.is_staff = user.is_superuser = staff
                user.email = f"{username}@clinic.example"
                user.save()
            users[username] = user
            self.stdout.write(
                f"demo user {username!r} ({'created' if created else 'exists'}), "
                f"password {DEMO_PASSWORD!r}"
            )
        doctor, created = Doctor.objects.get_or_create(
            user=users["dr-smith"],
            defaults={"name": "Dr. Smith", "specialty": "General practice"},
        )
        if doctor.slot_minutes != 30:
            doctor.slot_minutes = 30
            doctor.save(update_fields=["slot_minutes"])
        doctor_set_working_hours(doctor=doctor, **DEMO_HOURS)
        self.stdout.write(
            f"demo doctor {doctor.name!r} id={doctor.id} "
            f"({'created' if created else 'exists'}): "
            "Monday-Friday 09:00-17:00, 30-minute slots"
        )
