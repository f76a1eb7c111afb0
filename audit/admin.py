"""The trail in the admin: read-only, no delete, for staff with audit.view_auditentry."""

from django.contrib import admin

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = [
        "at",
        "action",
        "actor_id",
        "actor_role",
        "record_type",
        "record_ids",
        "client_ip",
        "request_id",
    ]
    list_filter = ["action", "record_type", "actor_role"]
    search_fields = ["=actor_id", "record_ids", "=request_id"]
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
