import uuid
from datetime import date as date_type
from datetime import datetime, time

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connections, models
from django.utils import timezone

from core.errors import ApplicationError, Conflict


class Weekday(models.IntegerChoices):
    MONDAY = 0
    TUESDAY = 1
    WEDNESDAY = 2
    THURSDAY = 3
    FRIDAY = 4
    SATURDAY = 5
    SUNDAY = 6


# The longest slot a doctor can have (the constraint on Doctor.slot_minutes).
MAX_SLOT_MINUTES = 240


def minutes_of(t: time) -> int:
    """Minutes since midnight: slot arithmetic without datetime overflow."""
    return t.hour * 60 + t.minute


def time_of(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


def _as_time(value) -> time:
    """A time read by raw SQL: PostgreSQL returns ``time``, SQLite text."""
    return value if isinstance(value, time) else time.fromisoformat(value)


def overlaps(start: int, length: int, others: list[tuple[int, int]]) -> bool:
    """Whether [start, start+length) meets any (start, length) of ``others`` (minutes)."""
    return any(
        start < o_start + o_length and o_start < start + length
        for o_start, o_length in others
    )


_DOCTOR_WITH_HOURS_SQL = """
SELECT d.id, d.user_id, d.name, d.specialty, d.slot_minutes,
       h.id, h.weekday, h.start, h."end"
FROM appointments_doctor d
LEFT JOIN appointments_workinghours h ON h.doctor_id = d.id
WHERE d.id = %s
ORDER BY h.weekday, h.start
"""


class DoctorQuerySet(models.QuerySet):
    def get_with_hours(self, pk: int) -> "Doctor":
        """The doctor with all its working hours, in one query (a LEFT JOIN).

        Booking reads both on every request: one round trip instead of two, and
        written in SQL because building the ORM query cost more than running it.
        """
        rows = []
        if 0 < pk < 2**63:  # ids are bigint: anything else names no doctor
            with connections[self.db].cursor() as cursor:
                cursor.execute(_DOCTOR_WITH_HOURS_SQL, [pk])
                rows = cursor.fetchall()
        if not rows:
            raise Doctor.DoesNotExist(f"No doctor with id {pk}.")
        fields = ["id", "user_id", "name", "specialty", "slot_minutes"]
        doctor = Doctor.from_db(self.db, fields, rows[0][:5])
        doctor.loaded_hours = [
            WorkingHours(
                id=hid,
                doctor=doctor,
                weekday=day,
                start=_as_time(start),
                end=_as_time(end),
            )
            for *_, hid, day, start, end in rows
            if hid is not None
        ]
        return doctor


class Doctor(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="doctor"
    )
    name = models.CharField(max_length=120)
    specialty = models.CharField(max_length=120, blank=True, db_index=True)
    slot_minutes = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(5), MaxValueValidator(MAX_SLOT_MINUTES)],
        help_text="Length of one appointment slot; slots start at each working period's start.",
    )

    objects = DoctorQuerySet.as_manager()

    # Working hours read with the doctor by ``get_with_hours``, else from the relation.
    loaded_hours: list["WorkingHours"] | None = None

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    slot_minutes__gte=5, slot_minutes__lte=MAX_SLOT_MINUTES
                ),
                name="doctor_slot_minutes_5_to_240",
                violation_error_message="A slot lasts 5 to 240 minutes.",
            )
        ]

    def __str__(self):
        return self.name

    def periods_on(self, day: date_type) -> list["WorkingHours"]:
        hours = (
            self.working_hours.all() if self.loaded_hours is None else self.loaded_hours
        )
        return [p for p in hours if p.weekday == day.weekday()]

    def slot_grid(
        self, day: date_type, periods: list["WorkingHours"] | None = None
    ) -> list[time]:
        """Every slot start of a day by the working hours, booked or not, in order."""
        starts = set()
        for period in self.periods_on(day) if periods is None else periods:
            start, end = minutes_of(period.start), minutes_of(period.end)
            starts.update(range(start, end - self.slot_minutes + 1, self.slot_minutes))
        return [time_of(m) for m in sorted(starts)]


class WorkingHours(models.Model):
    """One working period of a doctor on a weekday (a day may have several)."""

    doctor = models.ForeignKey(
        Doctor, on_delete=models.CASCADE, related_name="working_hours"
    )
    weekday = models.PositiveSmallIntegerField(choices=Weekday)
    start = models.TimeField()
    end = models.TimeField()

    class Meta:
        ordering = ["doctor", "weekday", "start"]
        verbose_name_plural = "working hours"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(start__lt=models.F("end")),
                name="working_hours_start_before_end",
                violation_error_message="A working period must start before it ends.",
            ),
            models.CheckConstraint(
                condition=models.Q(weekday__gte=0, weekday__lte=6),
                name="working_hours_weekday_0_to_6",
            ),
            models.UniqueConstraint(
                fields=["doctor", "weekday", "start"], name="working_hours_unique_start"
            ),
        ]

    def __str__(self):
        return f"{self.get_weekday_display()} {self.start:%H:%M}-{self.end:%H:%M}"


# Booking's hottest read, written once in SQL both databases run: the ORM spent
# more time building this query than the database spent answering it.
_NEARBY_SQL = """
SELECT a.doctor_id, a.patient_id, a.time_slot, d.slot_minutes
FROM appointments_appointment a
JOIN appointments_doctor d ON d.id = a.doctor_id
WHERE a.status = %s AND a.date = %s AND (a.doctor_id = %s OR a.patient_id = %s)
  AND a.time_slot >= %s AND a.time_slot <= %s AND a.id <> %s
"""


class AppointmentQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status=Appointment.Status.BOOKED)

    def nearby(self, *, doctor_id, patient_id, day, first, last, excluding=None):
        """(doctor_id, patient_id, start, slot minutes) of the active appointments of
        the doctor or the patient on ``day`` that start from ``first`` to ``last``."""
        connection = connections[self.db]
        prep = Appointment._meta.pk.get_db_prep_value
        params = [
            Appointment.Status.BOOKED.value,
            connection.ops.adapt_datefield_value(day),
            doctor_id,
            patient_id,
            connection.ops.adapt_timefield_value(first),
            connection.ops.adapt_timefield_value(last),
            prep(excluding or uuid.UUID(int=0), connection),
        ]
        with connection.cursor() as cursor:
            cursor.execute(_NEARBY_SQL, params)
            rows = cursor.fetchall()
        return [(d, p, _as_time(t), m) for d, p, t, m in rows]

    def visible_to(self, user):
        """Staff with view permission see all; a doctor their schedule; all their own."""
        if user.is_staff and user.has_perm("appointments.view_appointment"):
            return self
        return self.filter(models.Q(patient=user) | models.Q(doctor__user=user))


class Appointment(models.Model):
    class Status(models.TextChoices):
        BOOKED = "booked"
        CANCELLED = "cancelled"
        COMPLETED = "completed"
        NO_SHOW = "no_show"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="appointments"
    )
    doctor = models.ForeignKey(
        Doctor, on_delete=models.PROTECT, related_name="appointments"
    )
    date = models.DateField()
    time_slot = models.TimeField()
    reason = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=Status, default=Status.BOOKED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AppointmentQuerySet.as_manager()

    class Meta:
        ordering = ["date", "time_slot"]
        indexes = [
            models.Index(fields=["doctor", "date"]),
            models.Index(fields=["patient", "date"]),
        ]
        constraints = [
            # The booking rules two requests can race on, held by the database.
            models.UniqueConstraint(
                fields=["doctor", "date", "time_slot"],
                condition=models.Q(status="booked"),
                name="appointment_one_active_per_doctor_slot",
            ),
            models.UniqueConstraint(
                fields=["patient", "date", "time_slot"],
                condition=models.Q(status="booked"),
                name="appointment_one_active_per_patient_time",
            ),
        ]

    def __str__(self):
        return f"{self.doctor} {self.date} {self.time_slot:%H:%M} ({self.status})"

    @property
    def starts_at(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.date, self.time_slot))

    @property
    def has_started(self) -> bool:
        return self.starts_at <= timezone.now()

    # -- the state machine: booked -> cancelled | completed | no_show, or moved while booked

    def _require_booked(self, action: str) -> None:
        if self.status != self.Status.BOOKED:
            raise Conflict(
                f"The appointment is {self.status}; only a booked appointment can be {action}.",
                extra={"status": self.status},
            )

    def _require_not_started(self, message: str) -> None:
        if self.has_started:
            raise Conflict(message, extra={"status": self.status})

    def cancel(self) -> None:
        self._require_booked("cancelled")
        self._require_not_started(
            "The appointment has already started; mark it completed or no-show instead."
        )
        self._set_status(self.Status.CANCELLED)

    def require_movable(self) -> None:
        self._require_booked("rescheduled")
        self._require_not_started(
            "The appointment has already started; it can no longer be moved."
        )

    def reschedule(self, *, date: date_type, time_slot: time) -> None:
        """Move to a new slot; the old one is free as soon as this row is saved."""
        self.require_movable()
        if (date, time_slot) == (self.date, self.time_slot):
            raise ApplicationError(
                "The appointment is already in this slot.", field="timeSlot"
            )
        self.date, self.time_slot = date, time_slot
        self.save(update_fields=["date", "time_slot", "updated_at"])

    def complete(self) -> None:
        self._require_booked("completed")
        self._require_started("completed")
        self._set_status(self.Status.COMPLETED)

    def mark_no_show(self) -> None:
        self._require_booked("marked no-show")
        self._require_started("marked no-show")
        self._set_status(self.Status.NO_SHOW)

    def _require_started(self, action: str) -> None:
        if not self.has_started:
            raise Conflict(
                f"The appointment has not started yet; it cannot be {action} before "
                f"{self.date} {self.time_slot:%H:%M}.",
                extra={"status": self.status},
            )

    def _set_status(self, status: str) -> None:
        self.status = status
        self.save(update_fields=["status", "updated_at"])
