import json

from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from appointments.models import Appointment, Doctor, WorkingHours
from core.api import DayField, TimeSlotField

# -- doctors ---------------------------------------------------------------------


class WorkingHoursOutput(serializers.ModelSerializer):
    weekdayName = serializers.CharField(source="get_weekday_display")
    start = TimeSlotField()
    end = TimeSlotField()

    class Meta:
        model = WorkingHours
        fields = ["weekday", "weekdayName", "start", "end"]


class DoctorOutput(serializers.ModelSerializer):
    slotMinutes = serializers.IntegerField(source="slot_minutes")
    workingHours = WorkingHoursOutput(source="working_hours", many=True)

    class Meta:
        model = Doctor
        fields = ["id", "name", "specialty", "slotMinutes", "workingHours"]


class DoctorFilterInput(serializers.Serializer):
    specialty = serializers.CharField(
        required=False, allow_blank=True, max_length=120, help_text="Exact, any case."
    )


class SlotsQueryInput(serializers.Serializer):
    date = DayField(help_text="YYYY-MM-DD")


class SlotsOutput(serializers.Serializer):
    doctorId = serializers.IntegerField()
    date = serializers.DateField()
    slotMinutes = serializers.IntegerField()
    slots = serializers.ListField(
        child=TimeSlotField(), help_text="Free slot starts, HH:MM."
    )


# -- appointments ------------------------------------------------------------------


class AppointmentOutput(serializers.Serializer):
    # A plain Serializer: a ModelSerializer rebuilds its fields from the model on
    # every instance, which cost booking a millisecond.
    id = serializers.UUIDField(read_only=True)
    patientId = serializers.IntegerField(source="patient_id")
    doctorId = serializers.IntegerField(source="doctor_id")
    doctorName = serializers.CharField(source="doctor.name")
    date = serializers.DateField()
    timeSlot = TimeSlotField(source="time_slot")
    reason = serializers.CharField(allow_blank=True, max_length=500)
    status = serializers.ChoiceField(choices=Appointment.Status.choices)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


class AppointmentFilterInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=Appointment.Status.choices, required=False)
    dateFrom = DayField(required=False)
    dateTo = DayField(required=False)
    doctorId = serializers.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1
    )

    def validate(self, attrs):
        if (
            attrs.get("dateFrom")
            and attrs.get("dateTo")
            and attrs["dateFrom"] > attrs["dateTo"]
        ):
            raise serializers.ValidationError({"dateTo": "dateTo is before dateFrom."})
        return attrs


@extend_schema_field(
    {
        "oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^[0-9]+$"}],
        "example": 1,
    }
)
class DoctorIdField(serializers.PrimaryKeyRelatedField):
    """A doctor's id, as a number or a string of digits (the seed's client sends "1")."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not (
            isinstance(data, int)
            or (isinstance(data, str) and data.isascii() and data.isdigit())
        ):
            self.fail(
                "incorrect_type", data_type=type(data).__name__, value=_as_json(data)
            )
        try:
            return Doctor.objects.get_with_hours(int(data))
        except Doctor.DoesNotExist:
            self.fail("does_not_exist", pk_value=data)


def _as_json(value) -> str:
    """A client's value as the client wrote it (JSON), cut short."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


class AppointmentBookInput(serializers.Serializer):
    doctorId = DoctorIdField(
        queryset=Doctor.objects.all(),
        error_messages={
            "does_not_exist": "No doctor with id {pk_value}.",
            "incorrect_type": 'A doctor id is a whole number, e.g. 1 or "1", not {value}.',
        },
    )
    doctorName = serializers.CharField(required=False, allow_blank=True, max_length=120)
    date = DayField()
    timeSlot = TimeSlotField()
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=500, default=""
    )

    def validate(self, attrs):
        name = attrs.get("doctorName")
        if name and name.strip().casefold() != attrs["doctorId"].name.casefold():
            raise serializers.ValidationError(
                {"doctorName": f"Doctor {attrs['doctorId'].id} is not named {name!r}."}
            )
        return attrs


class AppointmentRescheduleInput(serializers.Serializer):
    date = DayField()
    timeSlot = TimeSlotField()


# -- patients ----------------------------------------------------------------------


class RegisterInput(serializers.Serializer):
    username = serializers.CharField(
        max_length=150, validators=[UnicodeUsernameValidator()]
    )
    password = serializers.CharField(
        max_length=128, write_only=True, trim_whitespace=False
    )
    email = serializers.EmailField(max_length=254)
    firstName = serializers.CharField(
        required=False, allow_blank=True, max_length=150, default=""
    )
    lastName = serializers.CharField(
        required=False, allow_blank=True, max_length=150, default=""
    )


class UserOutput(serializers.ModelSerializer):
    firstName = serializers.CharField(source="first_name")
    lastName = serializers.CharField(source="last_name")

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "email", "firstName", "lastName"]


class TokenPairOutput(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class TokenRefreshOutput(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField(
        required=False, help_text="When refresh tokens rotate."
    )
