"""API plumbing shared by every app: one exception handler, shared fields."""

import logging
from datetime import datetime, time

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from healthcare.errors import ApplicationError

logger = logging.getLogger(__name__)


def _first_message(errors) -> str:
    if isinstance(errors, dict):
        for field, value in errors.items():
            message = _first_message(value)
            return message if field == "non_field_errors" else f"{field}: {message}"
    if isinstance(errors, list) and errors:
        return _first_message(errors[0])
    return str(errors)


def exception_handler(exc, context):
    """Map domain and validation errors to JSON 4xx answers; never leak a traceback."""
    if isinstance(exc, ApplicationError):
        body = {"detail": exc.message} | exc.extra
        if exc.field:
            body["errors"] = {exc.field: [exc.message]}
        return Response(body, status=exc.status)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__)
        return Response(
            {"detail": "Internal error; it has been logged."},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        response.data = {"detail": _first_message(errors), "errors": errors}
    return response


@extend_schema_field({"type": "string", "example": "10:00 AM"})
class TimeSlotField(serializers.Field):
    """A time of day given as ``10:00``, ``10:00:00`` or ``10:00 AM``; rendered ``HH:MM``."""

    FORMATS = ("%H:%M", "%H:%M:%S", "%I:%M %p", "%I:%M%p", "%I %p")
    default_error_messages = {
        "invalid": "Time has the wrong format. Use HH:MM (24-hour) or HH:MM AM/PM.",
    }

    def to_internal_value(self, data) -> time:
        if isinstance(data, str):
            text = data.strip().upper()
            for fmt in self.FORMATS:
                try:
                    return datetime.strptime(text, fmt).time()
                except ValueError:
                    continue
        self.fail("invalid")

    def to_representation(self, value: time) -> str:
        return value.strftime("%H:%M")


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500
