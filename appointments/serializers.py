from rest_framework import serializers

from appointments.models import Appointment, Doctor
from healthcare.api import TimeSlotField


class DoctorOutput(serializers.ModelSerializer):
    class Meta:
        model = Doctor
        fields = ["id", "name", "specialty"]


class AppointmentOutput(serializers.ModelSerializer):
    patientId = serializers.IntegerField(source="patient_id")
    doctorId = serializers.IntegerField(source="doctor_id")
    doctorName = serializers.CharField(source="doctor.name")
    timeSlot = TimeSlotField(source="time_slot")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = Appointment
        fields = [
            "id",
            "patientId",
            "doctorId",
            "doctorName",
            "date",
            "timeSlot",
            "reason",
            "status",
            "createdAt",
            "updatedAt",
        ]


class AppointmentBookInput(serializers.Serializer):
    doctorId = serializers.PrimaryKeyRelatedField(
        queryset=Doctor.objects.all(),
        error_messages={
            "does_not_exist": "No doctor with id {pk_value}.",
            "incorrect_type": "A doctor id is a number, not {data_type}.",
        },
    )
    doctorName = serializers.CharField(required=False, allow_blank=True, max_length=120)
    date = serializers.DateField(input_formats=["%Y-%m-%d"])
    timeSlot = TimeSlotField()
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")

    def validate(self, attrs):
        name = attrs.get("doctorName")
        if name and name.strip().casefold() != attrs["doctorId"].name.casefold():
            raise serializers.ValidationError(
                {"doctorName": f"Doctor {attrs['doctorId'].id} is not named {name!r}."}
            )
        return attrs
