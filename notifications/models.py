from django.conf import settings
from django.db import models


class Notification(models.Model):
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    event_id = models.UUIDField()
    appointment_id = models.UUIDField(db_index=True)
    event_type = models.CharField(max_length=128)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "-created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["event_id", "recipient"], name="one_notification_per_event_recipient"
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

    def __str__(self):
        return f"{self.event_type} {self.event_id}"
