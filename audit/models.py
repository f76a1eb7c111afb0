"""The audit trail: one append-only row per access to or change of health records."""

from django.db import models
from django.utils import timezone


class AppendOnly(Exception):
    """Audit entries are never changed or deleted, except by the retention purge."""


class AuditEntryQuerySet(models.QuerySet):
    def for_record(self, record_id) -> "AuditEntryQuerySet":
        return self.filter(record_ids__contains=f",{record_id},")

    def update(self, **kwargs):
        raise AppendOnly("audit entries cannot be changed")

    def delete(self):
        raise AppendOnly("audit entries cannot be deleted; they age out (audit_purge)")

    def purge(self, *, before, batch_size: int = 5000) -> int:
        """Delete entries older than ``before`` in batches; the number deleted."""
        deleted = 0
        while True:
            ids = list(
                self.filter(at__lt=before).values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return deleted
            deleted += models.QuerySet.delete(self.model.objects.filter(pk__in=ids))[0]


class AuditEntry(models.Model):
    class Action(models.TextChoices):
        VIEWED = "viewed"
        LISTED = "listed"
        BOOKED = "booked"
        RESCHEDULED = "rescheduled"
        CANCELLED = "cancelled"
        COMPLETED = "completed"
        NO_SHOW = "no_show"
        MARKED_READ = "marked_read"
        ADMIN_VIEWED = "admin_viewed"
        ADMIN_LISTED = "admin_listed"
        ADMIN_CHANGED = "admin_changed"
        REPUBLISHED = "republished"
        REPLAYED = "replayed"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    # Ids, not foreign keys: the trail outlives accounts and records.
    actor_id = models.BigIntegerField(null=True, db_index=True)
    actor_role = models.CharField(max_length=16, blank=True)
    record_type = models.CharField(max_length=32)
    # ",id1,id2,": one row per request, and "contains ,id," finds a record's rows.
    record_ids = models.TextField(default=",")
    client_ip = models.CharField(max_length=45, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    os_user = models.CharField(max_length=64, blank=True)
    command = models.CharField(max_length=500, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        db_table = "audit_entry"
        ordering = ["at", "pk"]
        default_permissions = ("view",)
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} by {self.actor_id}"

    @property
    def ids(self) -> list[str]:
        return [part for part in self.record_ids.split(",") if part]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnly("audit entries cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnly("audit entries cannot be deleted; they age out (audit_purge)")
