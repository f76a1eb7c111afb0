from rest_framework import serializers

from notifications.models import Notification


class NotificationOutput(serializers.ModelSerializer):
    appointmentId = serializers.UUIDField(source="appointment_id")
    eventId = serializers.UUIDField(source="event_id")
    eventType = serializers.CharField(source="event_type")
    createdAt = serializers.DateTimeField(source="created_at")
    read = serializers.BooleanField()
    readAt = serializers.DateTimeField(source="read_at", allow_null=True)

    class Meta:
        model = Notification
        fields = [
            "id",
            "appointmentId",
            "eventId",
            "eventType",
            "message",
            "createdAt",
            "read",
            "readAt",
        ]


class NotificationFilterInput(serializers.Serializer):
    unread = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: only unread ones.",
    )


class UnreadCountOutput(serializers.Serializer):
    unread = serializers.IntegerField()
