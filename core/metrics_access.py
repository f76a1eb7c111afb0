"""Who may read /metrics and the details of /readyz: a token, or a trusted network.

Anyone else gets the status code and the names of the failing checks: never
addresses, counts or error text, which map the system for an attacker.
"""

import functools
import hmac
import ipaddress
import json
import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import JsonResponse

from core.client_ip import client_ip


def env_networks(name: str, default: str) -> list[str]:
    """Comma-separated networks (``10.0.0.0/8,::1/128``), refused at start if malformed."""
    raw = os.environ.get(name, default)
    networks = [part.strip() for part in raw.split(",") if part.strip()]
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {network!r} is not a network like 10.0.0.0/8."
            ) from None
    return networks


def may_see_details(request) -> bool:
    """The caller gave METRICS_TOKEN as a bearer token, or its address is allowed."""
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(net, strict=False)
        for net in settings.METRICS_ALLOWED_NETWORKS
    )


def metrics_access(view):
    """/metrics: 403 for a caller without the token and outside the allowed networks."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not may_see_details(request):
            return JsonResponse(
                {"detail": "Metrics need METRICS_TOKEN or an allowed address."},
                status=403,
            )
        return view(request, *args, **kwargs)

    return wrapped


def probe_summary(view):
    """/readyz: the full answer for the trusted; status and failing names for others."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if may_see_details(request):
            return response
        body = json.loads(response.content)
        failing = [name for name, check in body["checks"].items() if not check["ok"]]
        return JsonResponse(
            {"status": body["status"], "failing": failing},
            status=response.status_code,
        )

    return wrapped
