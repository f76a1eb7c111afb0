"""The caller's notifications: list (optionally unread only), mark read, unread count."""

from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import AuditEntry
from audit.trail import audit_read, audit_record
from core.api import error_responses, query_params
from core.errors import NotFound
from notifications.models import Notification
from notifications.serializers import (
    NotificationFilterInput,
    NotificationOutput,
    UnreadCountOutput,
)


@transaction.atomic
def notification_mark_read(*, user, notification_id: int) -> Notification:
    """Mark one of the user's notifications read; marking it again keeps the first time."""
    mine = Notification.objects.filter(recipient=user, pk=notification_id)
    mine.filter(read_at__isnull=True).update(read_at=timezone.now())
    try:
        notification = mine.get()
    except Notification.DoesNotExist:
        raise NotFound("No notification with this id.") from None
    audit_record(
        action=AuditEntry.Action.MARKED_READ,
        record_type="notification",
        record_ids=[notification.pk],
        actor=user,
    )
    return notification


class NotificationListApi(generics.ListAPIView):
    serializer_class = NotificationOutput

    @extend_schema(
        operation_id="notifications_list",
        parameters=[NotificationFilterInput],
        responses={200: NotificationOutput(many=True)} | error_responses(400, 401, 404),
    )
    def get(self, request, *args, **kwargs):
        """The caller's notifications, newest first."""
        response = super().get(request, *args, **kwargs)
        audit_read(
            request,
            action=AuditEntry.Action.LISTED,
            record_type="notification",
            record_ids=[row["id"] for row in response.data["results"]],
        )
        return response

    def get_queryset(self):
        unread = query_params(NotificationFilterInput, self.request)["unread"]
        notifications = Notification.objects.filter(
            recipient=self.request.user
        ).order_by("-created_at", "-id")
        if unread is not None:
            notifications = notifications.filter(read_at__isnull=unread)
        return notifications


class NotificationReadApi(APIView):
    @extend_schema(
        operation_id="notifications_read",
        parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
        request=None,
        responses={200: NotificationOutput} | error_responses(401, 404),
    )
    def post(self, request, pk: int):
        """Mark one notification read."""
        notification = notification_mark_read(user=request.user, notification_id=pk)
        return Response(NotificationOutput(notification).data)


class NotificationUnreadCountApi(APIView):
    @extend_schema(
        operation_id="notifications_unread_count",
        responses={200: UnreadCountOutput} | error_responses(401),
    )
    def get(self, request):
        """How many of the caller's notifications are unread."""
        count = Notification.objects.filter(
            recipient=request.user, read_at__isnull=True
        ).count()
        return Response(UnreadCountOutput({"unread": count}).data)
