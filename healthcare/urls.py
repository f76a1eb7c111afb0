from django.contrib import admin
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from appointments.api import AppointmentDetailApi, AppointmentListCreateApi, DoctorListApi
from healthcare import health, metrics, pipeline
from notifications.api import NotificationListApi


def api(route: str, view, name: str):
    """An API path that answers with and without a trailing slash."""
    return re_path(rf"^api/{route}/?$", view, name=name)


urlpatterns = [
    api("auth/token", TokenObtainPairView.as_view(), "token"),
    api("auth/token/refresh", TokenRefreshView.as_view(), "token-refresh"),
    api("doctors", DoctorListApi.as_view(), "doctors"),
    api("appointments", AppointmentListCreateApi.as_view(), "appointments"),
    api(
        r"appointments/(?P<pk>[0-9a-fA-F-]{36})",
        AppointmentDetailApi.as_view(),
        "appointment-detail",
    ),
    api("notifications", NotificationListApi.as_view(), "notifications"),
    api("schema", SpectacularAPIView.as_view(), "schema"),
    api("docs", SpectacularSwaggerView.as_view(url_name="schema"), "docs"),
    # Operations: probes and metrics answer with or without a trailing slash.
    re_path(r"^healthz/?$", health.healthz, name="healthz"),
    re_path(r"^readyz/?$", health.readyz, name="readyz"),
    re_path(r"^metrics/?$", metrics.metrics_view, name="metrics"),
    path("admin/pipeline/", admin.site.admin_view(pipeline.pipeline_view), name="admin-pipeline"),
    path("admin/", admin.site.urls),
]
