from rest_framework import serializers

from notifications.models import Notification


class NotificationOutput(serializers.ModelSerializer):
    appointmentId = serializers.UUIDField(source="appointment_id")
    eventId = serializers.UUIDField(source="event_id")
    eventType = serializers.CharField(source="event_type")
    createdAt = serializers.DateTimeField(source="created_at")
    read = serializers.BooleanField()

    class Meta:
        model = Notification
        fields = ["id", "appointmentId", "eventId", "eventType", "message", "createdAt", "read"]
