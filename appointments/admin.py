"""The clinic staff's admin: doctors with their hours, appointments changed only by services."""

from django.contrib import admin, messages

from appointments import services
from appointments.models import Appointment, Doctor, WorkingHours
from audit.admin_mixins import AuditedAdmin
from core.errors import ApplicationError


class WorkingHoursInline(admin.TabularInline):
    model = WorkingHours
    extra = 1


@admin.register(Doctor)
class DoctorAdmin(admin.ModelAdmin):
    list_display = ["name", "specialty", "user", "slot_minutes"]
    search_fields = ["name", "specialty", "user__username"]
    list_filter = ["specialty"]
    inlines = [WorkingHoursInline]


def _apply(modeladmin, request, queryset, service, done: str) -> None:
    """Run one service per selected appointment; report what changed and what was refused."""
    changed, refused = 0, []
    for appointment in queryset.select_related("doctor"):
        try:
            service(appointment=appointment, by=request.user)
        except ApplicationError as exc:
            refused.append(f"{appointment.id}: {exc.message}")
        else:
            changed += 1
    if changed:
        modeladmin.message_user(
            request, f"{changed} appointment(s) {done}.", messages.SUCCESS
        )
    for reason in refused:
        modeladmin.message_user(request, reason, messages.WARNING)


@admin.action(description="Cancel the selected appointments", permissions=["change"])
def cancel_appointments(modeladmin, request, queryset):
    _apply(modeladmin, request, queryset, services.appointment_cancel, "cancelled")


@admin.action(
    description="Mark the selected appointments completed", permissions=["change"]
)
def complete_appointments(modeladmin, request, queryset):
    _apply(modeladmin, request, queryset, services.appointment_complete, "completed")


@admin.action(
    description="Mark the selected appointments no-show", permissions=["change"]
)
def no_show_appointments(modeladmin, request, queryset):
    _apply(
        modeladmin,
        request,
        queryset,
        services.appointment_mark_no_show,
        "marked no-show",
    )


@admin.register(Appointment)
class AppointmentAdmin(AuditedAdmin):
    """Read-only rows: every change goes through an action, i.e. a service and its event."""

    audit_record_type = "appointment"

    list_display = [
        "id",
        "date",
        "time_slot",
        "doctor",
        "patient",
        "status",
        "created_at",
    ]
    list_filter = ["status", "doctor__specialty", "doctor", "date"]
    search_fields = ["=id", "patient__username", "patient__email", "doctor__name"]
    date_hierarchy = "date"
    list_select_related = ["doctor", "patient"]
    actions = [cancel_appointments, complete_appointments, no_show_appointments]
    readonly_fields = [
        "id",
        "patient",
        "doctor",
        "date",
        "time_slot",
        "reason",
        "status",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request):
        # Bookings go through the service so the outbox is never bypassed.
        return False

    def has_change_permission(self, request, obj=None):
        # The list's actions need "change"; a single row's form is view-only.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        # A deleted appointment would publish no event; cancel it instead.
        return False
