"""JWTs signed with their own key, which rotates: the previous key still verifies.

``JWT_SIGNING_KEY`` signs; ``JWT_PREVIOUS_SIGNING_KEY`` (set for one refresh
lifetime after a rotation, then removed) verifies tokens issued before it.
Refresh tokens rotate and are blacklisted after use; a password change, a deleted
or an inactive account makes every earlier token answer 401.
"""

import functools

from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework import exceptions, serializers
from rest_framework_simplejwt import tokens
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import (
    TokenBackendError,
    TokenBackendExpiredToken,
)
from rest_framework_simplejwt.serializers import (
    TokenObtainPairSerializer,
    TokenRefreshSerializer,
)
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

REVOKED = "This token is no longer valid; log in again."


class RotatingTokenBackend(TokenBackend):
    """Sign with the current key; verify with it, then with the previous one."""

    def __init__(self, *args, previous_key: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.previous = (
            TokenBackend(api_settings.ALGORITHM, previous_key) if previous_key else None
        )

    def decode(self, token, verify: bool = True):
        try:
            return super().decode(token, verify=verify)
        except TokenBackendExpiredToken:
            raise
        except TokenBackendError:
            if self.previous is None:
                raise
            return self.previous.decode(token, verify=verify)


@functools.cache
def token_backend() -> RotatingTokenBackend:
    return RotatingTokenBackend(
        api_settings.ALGORITHM,
        api_settings.SIGNING_KEY,
        previous_key=settings.JWT_PREVIOUS_SIGNING_KEY,
        leeway=api_settings.LEEWAY,
    )


class AccessToken(tokens.AccessToken):
    @property
    def token_backend(self):
        return token_backend()


class RefreshToken(tokens.RefreshToken):
    access_token_class = AccessToken

    @property
    def token_backend(self):
        return token_backend()


def _current_user(payload) -> object:
    """The token's user, refused (401) when gone, inactive, or its password changed."""
    user_id = payload.get(api_settings.USER_ID_CLAIM)
    user = (
        get_user_model().objects.filter(**{api_settings.USER_ID_FIELD: user_id}).first()
    )
    if user is None or not api_settings.USER_AUTHENTICATION_RULE(user):
        raise exceptions.AuthenticationFailed(REVOKED, "no_active_account")
    claim = payload.get(api_settings.REVOKE_TOKEN_CLAIM)
    if claim != get_md5_hash_password(user.password):
        raise exceptions.AuthenticationFailed(REVOKED, "password_changed")
    return user


class TokenPairSerializer(TokenObtainPairSerializer):
    token_class = RefreshToken

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # No longer than a username can be: the lockout records the name it was given.
        longest = get_user_model()._meta.get_field(self.username_field).max_length
        self.fields[self.username_field] = serializers.CharField(
            write_only=True, max_length=longest
        )

    def validate(self, attrs):
        # Authenticate with Django's request, not DRF's wrapper: the lockout
        # (django-axes) marks it, and its middleware turns the mark into a 429.
        request = self.context.get("request")
        if request is not None:
            self.context["request"] = getattr(request, "_request", request)
        return super().validate(attrs)


class TokenRotateSerializer(TokenRefreshSerializer):
    """Refresh: check the user first (a 401, never a 500), then rotate."""

    token_class = RefreshToken

    def validate(self, attrs):
        _current_user(self.token_class(attrs["refresh"]).payload)
        return super().validate(attrs)


class LogoutInput(serializers.Serializer):
    refresh = serializers.CharField()

    def save(self) -> None:
        """Blacklist the refresh token: it cannot be used again."""
        RefreshToken(self.validated_data["refresh"]).blacklist()
