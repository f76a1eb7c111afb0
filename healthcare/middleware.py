"""Request ids and HTTP metrics for every request."""

import logging
import re
import time
import uuid

from prometheus_client import Counter, Histogram

from core.logcontext import log_context

logger = logging.getLogger("healthcare.access")

# Served by /metrics (monitoring.metrics) from the default registry.
HTTP_REQUESTS = Counter(
    "healthcare_http_requests_total",
    "HTTP requests answered, by method, route name and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "healthcare_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route name.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

HEADER = "X-Request-ID"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_ROUTES = {"healthz", "readyz", "metrics"}


def request_id_from(value: str | None) -> str:
    """The caller's X-Request-ID when it is a plain token, else a new one."""
    if value and _VALID.match(value):
        return value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Give each request an id (the caller's X-Request-ID or a new one).

    The id is bound to every log record of the request, echoed in the response's
    X-Request-ID header, and the request is counted and timed for /metrics. The
    access line has the path without its query string: no personal data.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from(request.headers.get(HEADER))
        request.request_id = request_id
        started = time.perf_counter()
        with log_context(request_id=request_id):
            response = self.get_response(request)
            elapsed = time.perf_counter() - started
            route = _route(request)
            HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
            HTTP_DURATION.labels(request.method, route).observe(elapsed)
            logger.log(
                logging.DEBUG if route in _QUIET_ROUTES else logging.INFO,
                "%s %s %d %.1fms",
                request.method,
                request.path,
                response.status_code,
                elapsed * 1000,
                extra={
                    "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )
        response[HEADER] = request_id
        return response


def _route(request) -> str:
    """A bounded label: the URL pattern's name, never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    if match.namespace == "admin" or (match.url_name or "").startswith("admin"):
        return "admin"
    return match.url_name or match.route or "unnamed"
