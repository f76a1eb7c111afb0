"""The client's address, as far as the configured proxies vouch for it."""

import ipaddress

from django.conf import settings


def _valid(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def client_ip(request) -> str:
    """The address of the client that sent ``request``.

    With ``TRUSTED_PROXY_COUNT=0`` (the default) it is the socket's address and
    X-Forwarded-For is ignored: anyone can write that header. With N trusted
    proxies in front, each appends the address it saw, so the client is the N-th
    entry from the right; entries left of it are the client's own words.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return _valid(remote) or remote
    forwarded = [
        part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    ]
    forwarded = [part.strip() for part in forwarded if part.strip()]
    if not forwarded:
        return _valid(remote) or remote
    chosen = forwarded[-count] if len(forwarded) >= count else forwarded[0]
    return _valid(chosen) or remote
