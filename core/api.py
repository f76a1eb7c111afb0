"""API plumbing shared by every app: one exception handler, shared fields."""

import functools
import logging
import re
import sys
from datetime import date, datetime, time

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ApplicationError

logger = logging.getLogger(__name__)


def _first_message(errors) -> str:
    if isinstance(errors, dict):
        for field, value in errors.items():
            message = _first_message(value)
            if field == api_settings.NON_FIELD_ERRORS_KEY:
                return message
            return f"{field}: {message}"
    if isinstance(errors, list) and errors:
        return _first_message(errors[0])
    return str(errors)


# The database refused, dropped or lost the connection: the request may succeed if
# retried, so the answer is a 503 with Retry-After, never a 500.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
DATABASE_UNAVAILABLE_DETAIL = "The database is unavailable; retry in a few seconds."
RETRY_AFTER_SECONDS = 5


def _database_unavailable(exc, where: str, response):
    """Log the database error once (the request id is bound) and mark ``response``."""
    text = str(exc).strip()
    logger.warning(
        "database unavailable in %s, answered 503: %s: %s",
        where,
        type(exc).__name__,
        text.splitlines()[0][:200] if text else "",
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    # Django's request logger would log it again (with a traceback) at ERROR.
    response._has_been_logged = True
    return response


def exception_handler(exc, context):
    """Map domain and validation errors to JSON 4xx answers; never leak a traceback."""
    if isinstance(exc, DATABASE_UNAVAILABLE):
        response = Response(
            {"detail": DATABASE_UNAVAILABLE_DETAIL},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        view = context.get("view").__class__.__name__
        return _database_unavailable(exc, view, response)
    if isinstance(exc, ApplicationError):
        body = {"detail": exc.message} | exc.extra
        if exc.field:
            body["errors"] = {exc.field: [exc.message]}
        return Response(body, status=exc.status)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict
            if hasattr(exc, "error_dict")
            else {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception(
            "unhandled error in %s", context.get("view").__class__.__name__
        )
        return Response(
            {"detail": "Internal error; it has been logged."},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data
        if not isinstance(errors, dict):
            errors = {api_settings.NON_FIELD_ERRORS_KEY: errors}
        response.data = {"detail": _first_message(errors), "errors": errors}
    elif isinstance(response.data, dict) and "messages" in response.data:
        response.data = _one_token_message(response.data)
    return response


def _one_token_message(data: dict) -> dict:
    """simplejwt's 401 lists why each token type refused the token ("messages");
    the API's errors are ``{"detail", ...}``: the first reason goes into the detail."""
    reasons = [
        str(m["message"])
        for m in data.get("messages") or ()
        if isinstance(m, dict) and m.get("message")
    ]
    detail = str(data.get("detail", ""))
    if reasons:
        detail = f"{detail.rstrip('.')}: {reasons[0].rstrip('.')}."
    return {k: v for k, v in data.items() if k != "messages"} | {"detail": detail}


TIME_PATTERN = r"^\s*[0-9]{1,2}(:[0-5][0-9]){0,2}\s*([AaPp][Mm])?\s*$"


@extend_schema_field({"type": "string", "pattern": TIME_PATTERN, "example": "10:00"})
class TimeSlotField(serializers.Field):
    """A time of day given as ``10:00``, ``10:00:00`` or ``10:00 AM``; rendered ``HH:MM``."""

    FORMATS = ("%H:%M", "%H:%M:%S", "%I:%M %p", "%I:%M%p", "%I %p")
    default_error_messages = {
        "invalid": "Time has the wrong format. Use HH:MM (24-hour) or HH:MM AM/PM.",
    }

    def to_internal_value(self, data) -> time:
        if isinstance(data, str) and re.fullmatch(TIME_PATTERN, data):
            text = data.strip().upper()
            for fmt in self.FORMATS:
                try:
                    return datetime.strptime(text, fmt).time()
                except ValueError:
                    continue
        self.fail("invalid")

    def to_representation(self, value: time) -> str:
        return value.strftime("%H:%M")


class DayField(serializers.DateField):
    """A calendar day written ``YYYY-MM-DD``; a day that does not exist (2026-02-30)
    is named as such rather than as a wrong format."""

    default_error_messages = {
        "invalid": "Date has the wrong format. Use YYYY-MM-DD, e.g. 2026-05-04.",
        "no_such_day": "{value} is not a day of the calendar.",
    }

    def to_internal_value(self, value):
        # 2026-05-04, and as before 2026-5-4 (month and day not zero-padded)
        parts = isinstance(value, str) and re.fullmatch(
            r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})", value
        )
        if parts:
            try:
                return date(*(int(p) for p in parts.groups()))
            except ValueError:
                self.fail("no_such_day", value=value)
        if isinstance(value, str):
            self.fail("invalid")
        return super().to_internal_value(value)  # a date object, or "invalid"


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500

    def get_page_size(self, request) -> int:
        """``pageSize`` if given (at most 500); anything but a positive integer is a 400."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            raise exceptions.ValidationError(
                {"pageSize": ["A positive whole number is required."]}
            )
        return min(int(raw), self.max_page_size)


# -- errors in the schema, and for URLs no view matches ------------------------------


class ErrorOutput(serializers.Serializer):
    """Every 4xx answer: a message, and for invalid input the messages per field."""

    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )
    status = serializers.CharField(
        required=False, help_text="The current state, on a 409 from a state change."
    )


ERROR_DESCRIPTIONS = {
    400: "Invalid input; `errors` names each field.",
    401: "No valid token.",
    403: "Not allowed for this role.",
    404: "Not found, not yours, or a page past the end.",
    409: "Conflicts with the current state (a taken slot, a finished appointment).",
    429: "Too many requests; retry after the Retry-After header.",
    503: (
        "The database is unavailable, or the access could not be recorded in the "
        "audit trail; retry after the Retry-After header if given."
    ),
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """Schema entries for the error answers an endpoint can give."""
    return {
        code: OpenApiResponse(ErrorOutput, description=ERROR_DESCRIPTIONS[code])
        for code in codes
    }


def not_found(request, exception=None):
    """A JSON 404 for any URL that matches no view (API clients never see HTML)."""
    return JsonResponse({"detail": "Not found."}, status=404)


@csrf_exempt
def api_not_found(request, *args, **kwargs):
    """The last API route: /api and any other path under it, any method. Django's
    handler404 does the same, but with DEBUG on (make run) Django answers an
    unmatched URL with its HTML debug page instead."""
    return not_found(request)


def server_error(request):
    """Django's 500 handler (errors outside DRF views: middleware, plain views).

    A database that refused or dropped the connection answers 503 with Retry-After;
    under /api/ every answer is JSON, never Django's HTML page.
    """
    exc = sys.exc_info()[1]
    api = request.path.startswith("/api/")
    if isinstance(exc, DATABASE_UNAVAILABLE):
        if api:
            response = JsonResponse({"detail": DATABASE_UNAVAILABLE_DETAIL}, status=503)
        else:
            response = HttpResponse(
                DATABASE_UNAVAILABLE_DETAIL, status=503, content_type="text/plain"
            )
        return _database_unavailable(exc, "a Django view or middleware", response)
    if api:
        return JsonResponse(
            {"detail": "Internal error; it has been logged."}, status=500
        )
    return defaults.server_error(request)


@functools.cache
def _shared(serializer_class) -> serializers.Serializer:
    """One instance per class, its fields built once: a new serializer deep-copies
    every declared field, which cost a booking more than the validation itself."""
    return serializer_class()


def validated(serializer_class, data) -> dict:
    """``serializer_class(data=data)``'s validated data; invalid data raises exactly
    what ``is_valid(raise_exception=True)`` raises (a new serializer reports it).

    For serializers whose validation reads no context and keeps no state: the
    shared instance validates concurrent requests.
    """
    try:
        return _shared(serializer_class).run_validation(data)
    except exceptions.ValidationError:
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


def represented(serializer_class, instance) -> dict:
    """``serializer_class(instance).data``, rendered by the shared instance."""
    return _shared(serializer_class).to_representation(instance)


def query_params(serializer_class, request) -> dict:
    """Validate a request's query string with a serializer; bad values answer 400."""
    # A plain dict, not the QueryDict: an empty value is then invalid, not "absent".
    return validated(serializer_class, request.query_params.dict())
