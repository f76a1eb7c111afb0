from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from appointments.models import Appointment, Doctor
from appointments.serializers import AppointmentBookInput, AppointmentOutput, DoctorOutput
from appointments.services import appointment_book


class DoctorListApi(generics.ListAPIView):
    queryset = Doctor.objects.all()
    serializer_class = DoctorOutput


def visible_appointments(user):
    """The appointments a user may see: staff all, a doctor their schedule, a patient theirs."""
    qs = Appointment.objects.select_related("doctor")
    if user.is_staff:
        return qs
    if hasattr(user, "doctor"):
        return qs.filter(doctor=user.doctor)
    return qs.filter(patient=user)


class AppointmentListCreateApi(generics.ListAPIView):
    serializer_class = AppointmentOutput

    def get_queryset(self):
        return visible_appointments(self.request.user)

    @extend_schema(request=AppointmentBookInput, responses={201: AppointmentOutput})
    def post(self, request):
        data = AppointmentBookInput(data=request.data)
        data.is_valid(raise_exception=True)
        appointment = appointment_book(
            patient=request.user,
            doctor=data.validated_data["doctorId"],
            date=data.validated_data["date"],
            time_slot=data.validated_data["timeSlot"],
            reason=data.validated_data["reason"],
            traceparent=request.headers.get("traceparent", "")[:55],
        )
        return Response(AppointmentOutput(appointment).data, status=status.HTTP_201_CREATED)


class AppointmentDetailApi(generics.RetrieveAPIView):
    serializer_class = AppointmentOutput

    def get_queryset(self):
        return visible_appointments(self.request.user)
