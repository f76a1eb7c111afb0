from django.conf import settings
from django.db import models
from django.utils import timezone


class Notification(models.Model):
    # Each index and check here is paid by every notification the consumer writes
    # (two per event), so only those that a query needs are kept:
    # - recipient: no index of its own, the (recipient, -created_at) index below
    #   serves every lookup by recipient. The database-level foreign key stays,
    #   though its check costs the batch statement about a fifth of its time:
    #   without it, a user deleted while the consumer writes their notifications
    #   (Django collects the cascade before the DELETE) would leave orphans
    #   holding health data. Bookings lock the patient row FOR NO KEY UPDATE,
    #   which the check's KEY SHARE lock does not wait for.
    # - appointment_id: no index; it would be a random key (appointment ids are
    #   UUID4) touching a random page per row as the table grows. Appointment
    #   lookups go through the outbox's event ids (the admin's pipeline page).
    # - (event_id, recipient) unique: event ids are time-ordered, so it appends;
    #   it finds an event's notifications and refuses a second one per recipient.
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notifications",
        db_index=False,
    )
    event_id = models.UUIDField()
    appointment_id = models.UUIDField()
    event_type = models.CharField(max_length=128)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "-created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["event_id", "recipient"],
                name="one_notification_per_event_recipient",
            )
        ]

    def __str__(self):
        return f"{self.event_type} for user {self.recipient_id}"

    @property
    def read(self) -> bool:
        return self.read_at is not None


class ProcessedEvent(models.Model):
    """The inbox: an event id here has had its effect; a second delivery is skipped."""

    event_id = models.UUIDField(primary_key=True)
    event_type = models.CharField(max_length=128)
    topic = models.CharField(max_length=249)
    partition = models.IntegerField()
    offset = models.BigIntegerField()
    processed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-processed_at"]
        # The consumer's last progress (/readyz, /metrics) without a table scan.
        indexes = [models.Index(fields=["processed_at"], name="inbox_processed_at_idx")]

    def __str__(self):
        return f"{self.event_type} {self.event_id}"


class EmailDeliveryQuerySet(models.QuerySet):
    def due(self, now=None):
        """Pending deliveries whose next attempt (or claim lease) has come."""
        return self.filter(
            status=EmailDelivery.Status.PENDING,
            next_attempt_at__lte=now or timezone.now(),
        )


class EmailDelivery(models.Model):
    """The email channel of one notification: written with it, sent later with retries."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    # The notification's id is the key: one row per recipient, no extra index. No
    # database-level foreign key: the row is only ever inserted by the statement that
    # inserts its notification, and deletions cascade through Django; the check would
    # cost the consumer's batch a sixth of its time.
    notification = models.OneToOneField(
        Notification,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="email_delivery",
        db_constraint=False,
    )
    status = models.CharField(max_length=16, choices=Status, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # When a pending delivery is next tried; a claim pushes it out as a lease, so a
    # sender that dies mid-send leaves the row to be retried, never lost.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = EmailDeliveryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "email deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="email_delivery_due",
            )
        ]

    def __str__(self):
        return f"email for notification {self.notification_id} ({self.status})"
