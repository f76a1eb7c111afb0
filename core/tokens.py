"""JWTs signed with their own key, which rotates: the previous key still verifies.

``JWT_SIGNING_KEY`` signs; ``JWT_PREVIOUS_SIGNING_KEY`` (set for one refresh
lifetime after a rotation, then removed) verifies tokens issued before it.
Refresh tokens rotate and are blacklisted after use; a password change, a deleted
or an inactive account makes every earlier token answer 401.
"""

import functools
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections, router
from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework import exceptions, serializers
from rest_framework_simplejwt import authentication, tokens
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import (
    AuthenticationFailed,
    InvalidToken,
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
# Access tokens whose verification each web process remembers (then it starts over).
VERIFIED_TOKENS_KEPT = 10_000


class RotatingTokenBackend(TokenBackend):
    """Sign with the current key; verify with it, then with the previous one."""

    def __init__(self, *args, previous_key: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.previous = (
            TokenBackend(api_settings.ALGORITHM, previous_key) if previous_key else None
        )
        # Tokens verified before, and their claims: a client sends the same access
        # token on every request, and checking its signature and claims again cost
        # more than a statement. Only the expiry can change with time (a token
        # valid before stays valid for "iat" and "nbf"), so a hit checks only that.
        self.verified: dict = {}

    def decode(self, token, verify: bool = True):
        if not verify:
            return self._decode(token, verify=False)
        payload = self.verified.get(token)
        if payload is None:
            payload = self._decode(token, verify=True)
            if isinstance(payload.get("exp"), int):
                if len(self.verified) >= VERIFIED_TOKENS_KEPT:
                    self.verified.clear()
                self.verified[token] = dict(payload)
            return payload
        leeway = self.get_leeway().total_seconds()
        if payload["exp"] <= time.time() - leeway:
            raise TokenBackendExpiredToken(_("Token is expired"))
        return dict(payload)

    def _decode(self, token, verify: bool):
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
    user = fetch_user(user_id) if user_id is not None else None
    if user is None or not api_settings.USER_AUTHENTICATION_RULE(user):
        raise exceptions.AuthenticationFailed(REVOKED, "no_active_account")
    claim = payload.get(api_settings.REVOKE_TOKEN_CLAIM)
    if claim != get_md5_hash_password(user.password):
        raise exceptions.AuthenticationFailed(REVOKED, "password_changed")
    return user


@functools.cache
def _user_select(alias: str) -> tuple[str, list[str]]:
    """SELECT of every concrete column of one user by id, and the field names."""
    model = get_user_model()
    q = connections[alias].ops.quote_name
    fields = model._meta.concrete_fields
    columns = ", ".join(q(f.column) for f in fields)
    by = q(model._meta.get_field(api_settings.USER_ID_FIELD).column)
    sql = f"SELECT {columns} FROM {q(model._meta.db_table)} WHERE {by} = %s"
    return sql, [f.attname for f in fields]


def fetch_user(user_id):
    """``User.objects.get(<USER_ID_FIELD>=user_id)``, or None: the same row and object,
    from a statement built once (building the ORM query cost more than running it)."""
    model = get_user_model()
    alias = router.db_for_read(model)
    field = model._meta.get_field(api_settings.USER_ID_FIELD)
    sql, names = _user_select(alias)
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, [field.get_prep_value(user_id)])
        row = cursor.fetchone()
    return None if row is None else model.from_db(alias, names, row)


class JWTAuthentication(authentication.JWTAuthentication):
    """simplejwt's authentication and checks; the user read by ``fetch_user``."""

    def get_user(self, validated_token):
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as e:
            raise InvalidToken(
                _("Token contained no recognizable user identification")
            ) from e
        user = fetch_user(user_id)
        if user is None:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        if api_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            api_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed(
                _("The user's password has been changed."), code="password_changed"
            )
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


class JWTAuthenticationScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of ``JWTAuthentication``: simplejwt's own
    (drf-spectacular matches the authenticator's exact class, not subclasses)."""

    target_class = "core.tokens.JWTAuthentication"
