"""Who is asking, for code below the view that has no request: address and request id."""

import contextvars
from dataclasses import dataclass

from core.client_ip import client_ip


@dataclass(frozen=True)
class RequestContext:
    client_ip: str = ""
    request_id: str = ""


_NONE = RequestContext()  # frozen: safe to share as the default
_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "request_context", default=None
)


def current_request() -> RequestContext:
    return _current.get() or _NONE


class RequestContextMiddleware:
    """Bind the client's address and the request id for the request's duration."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        context = RequestContext(
            client_ip=client_ip(request),
            request_id=getattr(request, "request_id", ""),
        )
        token = _current.set(context)
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)
