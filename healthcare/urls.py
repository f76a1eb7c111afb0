from django.contrib import admin
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from appointments.api import (
    AppointmentCancelApi,
    AppointmentCompleteApi,
    AppointmentDetailApi,
    AppointmentListCreateApi,
    AppointmentNoShowApi,
    AppointmentRescheduleApi,
    DoctorDetailApi,
    DoctorListApi,
    DoctorSlotsApi,
    LogoutApi,
    RegisterApi,
    TokenApi,
    TokenRefreshApi,
)
from core.api import api_not_found
from core.throttling import throttle_posts
from monitoring import health, metrics
from monitoring.views import pipeline_view
from notifications.api import (
    NotificationListApi,
    NotificationReadApi,
    NotificationUnreadCountApi,
)

HEX = "[0-9a-fA-F]"
UUID = rf"(?P<pk>{HEX}{{8}}-?{HEX}{{4}}-?{HEX}{{4}}-?{HEX}{{4}}-?{HEX}{{12}})"
INT = r"(?P<pk>[0-9]{1,18})"


def api(route: str, view, name: str):
    """An API path that answers with and without a trailing slash."""
    return re_path(rf"^api/{route}/?$", view, name=name)


urlpatterns = [
    api("auth/register", RegisterApi.as_view(), "register"),
    api("auth/token", TokenApi.as_view(), "token"),
    api("auth/token/refresh", TokenRefreshApi.as_view(), "token-refresh"),
    api("auth/logout", LogoutApi.as_view(), "logout"),
    api("doctors", DoctorListApi.as_view(), "doctors"),
    api(f"doctors/{INT}", DoctorDetailApi.as_view(), "doctor-detail"),
    api(f"doctors/{INT}/slots", DoctorSlotsApi.as_view(), "doctor-slots"),
    api("appointments", AppointmentListCreateApi.as_view(), "appointments"),
    api(f"appointments/{UUID}", AppointmentDetailApi.as_view(), "appointment-detail"),
    api(
        f"appointments/{UUID}/cancel",
        AppointmentCancelApi.as_view(),
        "appointment-cancel",
    ),
    api(
        f"appointments/{UUID}/reschedule",
        AppointmentRescheduleApi.as_view(),
        "appointment-reschedule",
    ),
    api(
        f"appointments/{UUID}/complete",
        AppointmentCompleteApi.as_view(),
        "appointment-complete",
    ),
    api(
        f"appointments/{UUID}/no-show",
        AppointmentNoShowApi.as_view(),
        "appointment-no-show",
    ),
    api("notifications", NotificationListApi.as_view(), "notifications"),
    api(
        "notifications/unread-count",
        NotificationUnreadCountApi.as_view(),
        "notifications-unread-count",
    ),
    api(
        f"notifications/{INT}/read", NotificationReadApi.as_view(), "notification-read"
    ),
    api("schema", SpectacularAPIView.as_view(), "schema"),
    # The split view serves Swagger UI's setup as a file: the CSP allows no inline script.
    api("docs", SpectacularSwaggerSplitView.as_view(url_name="schema"), "docs"),
    # Anything else under /api (an id of the wrong form, a typo): a JSON 404.
    re_path(r"^api(/|$)", api_not_found, name="api-not-found"),
    # Operations: probes and metrics answer with or without a trailing slash.
    re_path(r"^healthz/?$", health.healthz, name="healthz"),
    re_path(r"^readyz/?$", health.readyz, name="readyz"),
    re_path(r"^metrics/?$", metrics.metrics_view, name="metrics"),
    path(
        "admin/pipeline/",
        admin.site.admin_view(pipeline_view),
        name="admin-pipeline",
    ),
    path(
        "admin/login/",
        throttle_posts(
            admin.site.login,
            scope="admin-login",
            rate_setting="ADMIN_LOGIN_THROTTLE_RATE",
        ),
    ),
    path("admin/", admin.site.urls),
]

handler404 = "core.api.not_found"
handler500 = "core.api.server_error"
