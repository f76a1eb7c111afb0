from rest_framework import generics

from notifications.models import Notification
from notifications.serializers import NotificationOutput


class NotificationListApi(generics.ListAPIView):
    """The caller's notifications, newest first."""

    serializer_class = NotificationOutput

    def get_queryset(self):
        return Notification.objects.filter(recipient=self.request.user).order_by(
            "-created_at", "-id"
        )
