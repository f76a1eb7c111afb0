"""The appointments API: thin views that validate, call one service, render one output."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from appointments import selectors, services
from appointments.serializers import (
    AppointmentBookInput,
    AppointmentFilterInput,
    AppointmentOutput,
    AppointmentRescheduleInput,
    DoctorFilterInput,
    DoctorOutput,
    RegisterInput,
    SlotsOutput,
    SlotsQueryInput,
    TokenPairOutput,
    TokenRefreshOutput,
    UserOutput,
)
from audit.models import AuditEntry
from audit.trail import audit_read
from core.api import (
    error_responses,
    query_params,
    represented,
    validated,
)
from core.throttling import AuthRateThrottle, BookingRateThrottle
from core.tokens import LogoutInput


def _traceparent(request) -> str:
    return request.headers.get("traceparent", "")[:55]


# -- auth ------------------------------------------------------------------------------


class RegisterApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [AuthRateThrottle]

    @extend_schema(
        operation_id="auth_register",
        request=RegisterInput,
        responses={201: UserOutput} | error_responses(400, 429),
        auth=[],
    )
    def post(self, request):
        """Register a patient account (Django's password rules apply)."""
        data = RegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.patient_register(
            username=data.validated_data["username"],
            password=data.validated_data["password"],
            email=data.validated_data["email"],
            first_name=data.validated_data["firstName"],
            last_name=data.validated_data["lastName"],
        )
        return Response(UserOutput(user).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    post=extend_schema(
        operation_id="auth_token",
        responses={200: TokenPairOutput} | error_responses(400, 401, 429),
    )
)
class TokenApi(TokenObtainPairView):
    throttle_classes = [AuthRateThrottle]


@extend_schema_view(
    post=extend_schema(
        operation_id="auth_token_refresh",
        responses={200: TokenRefreshOutput} | error_responses(400, 401, 429),
    )
)
class TokenRefreshApi(TokenRefreshView):
    """Answers a new access token and a new refresh token; the old one is spent."""

    throttle_classes = [AuthRateThrottle]


class LogoutApi(APIView):
    # Not throttled: revoking a token must work even from a throttled address.
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_logout",
        request=LogoutInput,
        responses={204: None} | error_responses(400, 401),
        auth=[],
    )
    def post(self, request):
        """Revoke a refresh token: refreshing with it answers 401 from now on."""
        data = LogoutInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            data.save()
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    def get_authenticate_header(self, request) -> str:
        # A bad token answers 401 (as on refresh), not the 403 of a view without auth.
        return 'Bearer realm="api"'


# -- doctors -----------------------------------------------------------------------------

DOCTOR_ID = OpenApiParameter("id", int, OpenApiParameter.PATH)


class DoctorListApi(generics.ListAPIView):
    serializer_class = DoctorOutput

    @extend_schema(
        operation_id="doctors_list",
        parameters=[DoctorFilterInput],
        responses={200: DoctorOutput(many=True)} | error_responses(400, 401, 404),
    )
    def get(self, request, *args, **kwargs):
        """Doctors with their working hours, optionally of one specialty."""
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = query_params(DoctorFilterInput, self.request)
        return selectors.doctor_list(specialty=filters.get("specialty", ""))


class DoctorDetailApi(APIView):
    @extend_schema(
        operation_id="doctors_retrieve",
        parameters=[DOCTOR_ID],
        responses={200: DoctorOutput} | error_responses(401, 404),
    )
    def get(self, request, pk: int):
        return Response(DoctorOutput(selectors.doctor_get(doctor_id=pk)).data)


class DoctorSlotsApi(APIView):
    @extend_schema(
        operation_id="doctors_slots",
        parameters=[DOCTOR_ID, SlotsQueryInput],
        responses={200: SlotsOutput} | error_responses(400, 401, 404),
    )
    def get(self, request, pk: int):
        """The free slots of one day: on the doctor's grid, not taken, not past."""
        day = query_params(SlotsQueryInput, request)["date"]
        doctor = selectors.doctor_get(doctor_id=pk)
        slots = selectors.doctor_free_slots(doctor=doctor, day=day)
        return Response(
            SlotsOutput(
                {
                    "doctorId": doctor.id,
                    "date": day,
                    "slotMinutes": doctor.slot_minutes,
                    "slots": slots,
                }
            ).data
        )


# -- appointments --------------------------------------------------------------------


class AppointmentListCreateApi(generics.ListAPIView):
    serializer_class = AppointmentOutput
    throttle_classes = [BookingRateThrottle]

    @extend_schema(
        operation_id="appointments_list",
        parameters=[AppointmentFilterInput],
        responses={200: AppointmentOutput(many=True)}
        | error_responses(400, 401, 404, 503),
    )
    def get(self, request, *args, **kwargs):
        """Appointments the caller may see: their own, a doctor's schedule, all for staff."""
        response = super().get(request, *args, **kwargs)
        audit_read(
            request,
            action=AuditEntry.Action.LISTED,
            record_type="appointment",
            record_ids=[row["id"] for row in response.data["results"]],
        )
        return response

    def get_queryset(self):
        filters = query_params(AppointmentFilterInput, self.request)
        return selectors.appointment_list(
            user=self.request.user,
            status=filters.get("status", ""),
            date_from=filters.get("dateFrom"),
            date_to=filters.get("dateTo"),
            doctor_id=filters.get("doctorId"),
        )

    @extend_schema(
        operation_id="appointments_create",
        request=AppointmentBookInput,
        responses={201: AppointmentOutput} | error_responses(400, 401, 409, 429),
    )
    def post(self, request):
        """Book a free slot for the caller."""
        data = validated(AppointmentBookInput, request.data)
        appointment = services.appointment_book(
            patient=request.user,
            doctor=data["doctorId"],
            date=data["date"],
            time_slot=data["timeSlot"],
            reason=data["reason"],
            traceparent=_traceparent(request),
        )
        return Response(
            represented(AppointmentOutput, appointment), status=status.HTTP_201_CREATED
        )


APPOINTMENT_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH)
TRANSITION_RESPONSES = {200: AppointmentOutput} | error_responses(
    401, 403, 404, 409, 429
)


class AppointmentDetailApi(APIView):
    @extend_schema(
        operation_id="appointments_retrieve",
        parameters=[APPOINTMENT_ID],
        responses={200: AppointmentOutput} | error_responses(401, 404, 503),
    )
    def get(self, request, pk):
        appointment = selectors.appointment_get(user=request.user, appointment_id=pk)
        audit_read(
            request,
            action=AuditEntry.Action.VIEWED,
            record_type="appointment",
            record_ids=[appointment.pk],
        )
        return Response(represented(AppointmentOutput, appointment))


class AppointmentTransitionApi(APIView):
    """One state change without a body, answered with the appointment after it."""

    service = None
    throttle_classes = [BookingRateThrottle]

    def transition(self, request, pk) -> Response:
        appointment = selectors.appointment_get(user=request.user, appointment_id=pk)
        appointment = self.service(
            appointment=appointment, by=request.user, traceparent=_traceparent(request)
        )
        return Response(represented(AppointmentOutput, appointment))


class AppointmentCancelApi(AppointmentTransitionApi):
    service = staticmethod(services.appointment_cancel)

    @extend_schema(
        operation_id="appointments_cancel",
        parameters=[APPOINTMENT_ID],
        request=None,
        responses=TRANSITION_RESPONSES,
    )
    def post(self, request, pk):
        """Cancel a booked appointment (its patient, its doctor or staff); frees the slot."""
        return self.transition(request, pk)


class AppointmentCompleteApi(AppointmentTransitionApi):
    service = staticmethod(services.appointment_complete)

    @extend_schema(
        operation_id="appointments_complete",
        parameters=[APPOINTMENT_ID],
        request=None,
        responses=TRANSITION_RESPONSES,
    )
    def post(self, request, pk):
        """Mark a started appointment completed (its doctor or staff)."""
        return self.transition(request, pk)


class AppointmentNoShowApi(AppointmentTransitionApi):
    service = staticmethod(services.appointment_mark_no_show)

    @extend_schema(
        operation_id="appointments_no_show",
        parameters=[APPOINTMENT_ID],
        request=None,
        responses=TRANSITION_RESPONSES,
    )
    def post(self, request, pk):
        """Record that the patient did not come (its doctor or staff, once it started)."""
        return self.transition(request, pk)


class AppointmentRescheduleApi(APIView):
    throttle_classes = [BookingRateThrottle]

    @extend_schema(
        operation_id="appointments_reschedule",
        parameters=[APPOINTMENT_ID],
        request=AppointmentRescheduleInput,
        responses={200: AppointmentOutput} | error_responses(400, 401, 404, 409, 429),
    )
    def post(self, request, pk):
        """Move a booked appointment to another free slot of the same doctor."""
        appointment = selectors.appointment_get(user=request.user, appointment_id=pk)
        data = validated(AppointmentRescheduleInput, request.data)
        appointment = services.appointment_reschedule(
            appointment=appointment,
            by=request.user,
            date=data["date"],
            time_slot=data["timeSlot"],
            traceparent=_traceparent(request),
        )
        return Response(represented(AppointmentOutput, appointment))
