"""Request ids and HTTP metrics for every request."""

import logging
import re
import time
import uuid

from healthcare import metrics
from healthcare.logging import log_context

logger = logging.getLogger("healthcare.access")

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
            metrics.observe_request(
                method=request.method,
                route=route,
                status=response.status_code,
                seconds=elapsed,
            )
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
