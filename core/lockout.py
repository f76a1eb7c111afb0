"""Lockout of repeated failed logins (django-axes) for every login that has a request."""

from axes.backends import AxesStandaloneBackend


class LockoutBackend(AxesStandaloneBackend):
    """Axes' check, skipped for calls without a request (shell, test client login).

    Lockout protects the login forms and the token endpoint, which always pass the
    request; code on the server that authenticates has no attacker to lock out.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
