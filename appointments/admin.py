from django.contrib import admin

from appointments.models import Appointment, Doctor


@admin.register(Doctor)
class DoctorAdmin(admin.ModelAdmin):
    list_display = ["name", "specialty", "user", "slot_minutes"]
    search_fields = ["name", "specialty", "user__username"]
    list_filter = ["specialty"]


@admin.register(Appointment)
class AppointmentAdmin(admin.ModelAdmin):
    list_display = ["id", "date", "time_slot", "doctor", "patient", "status", "created_at"]
    list_filter = ["status", "doctor", "date"]
    search_fields = ["=id", "patient__username", "doctor__name"]
    date_hierarchy = "date"
    readonly_fields = ["id", "patient", "doctor", "date", "time_slot", "status", "created_at", "updated_at"]

    def has_add_permission(self, request):
        # Bookings go through the API's service so the outbox is never bypassed.
        return False
