from django.contrib import admin

from audit.admin_mixins import AuditedAdmin
from core.admin import ReadOnlyAdmin
from notifications.models import EmailDelivery, Notification, ProcessedEvent


@admin.register(Notification)
class NotificationAdmin(AuditedAdmin):
    audit_record_type = "notification"
    list_display = [
        "id",
        "recipient",
        "event_type",
        "appointment_id",
        "created_at",
        "read_at",
    ]
    list_filter = ["event_type", ("read_at", admin.EmptyFieldListFilter)]
    search_fields = ["=appointment_id", "=event_id", "recipient__username"]
    readonly_fields = [
        "recipient",
        "event_id",
        "appointment_id",
        "event_type",
        "message",
        "created_at",
    ]


@admin.register(ProcessedEvent)
class ProcessedEventAdmin(ReadOnlyAdmin):
    """The inbox: written by the consumer only, never deleted here (a deleted row
    lets a republished event notify twice)."""

    list_display = [
        "event_id",
        "event_type",
        "topic",
        "partition",
        "offset",
        "processed_at",
    ]
    list_filter = ["event_type", "topic"]
    search_fields = ["=event_id"]


@admin.register(EmailDelivery)
class EmailDeliveryAdmin(admin.ModelAdmin):
    """The email channel: what was sent, what waits for a retry, what gave up."""

    list_display = ["notification", "status", "attempts", "next_attempt_at", "sent_at"]
    list_filter = ["status"]
    search_fields = ["=notification__id", "=notification__event_id"]
    # What the mailer recorded: read-only, so the history cannot be rewritten.
    readonly_fields = [
        "notification",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "sent_at",
        "created_at",
    ]
    fields = readonly_fields
