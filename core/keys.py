"""Signing keys from the environment: required outside local development, never short.

On a developer's machine (the local SQLite default) a missing key is generated once
into a git-ignored file under var/, so no key is ever written in the repository.
"""

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

MIN_LENGTH = 50
# Where a developer's machine keeps each generated key, under the var directory
# (the settings read them; make run RELAY=cdc hands them on).
LOCAL_KEY_FILES = {"DJANGO_SECRET_KEY": "secret_key", "JWT_SIGNING_KEY": "jwt_key"}


def _checked(name: str, value: str) -> str:
    if len(value) < MIN_LENGTH:
        raise ImproperlyConfigured(
            f"{name} is {len(value)} characters long; use at least {MIN_LENGTH} "
            "random characters (python -c 'import secrets; "
            "print(secrets.token_urlsafe(50))')."
        )
    return value


def local_key_file(path: Path) -> str:
    """The key in ``path``, created with a random one (mode 0600) on first use.

    Written to a private file first and linked into place, so processes starting
    together never read a half-written key: the first link wins, the others read it.
    """
    if not path.exists():
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(64))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def env_key(name: str, *, local: bool, var_dir: Path) -> str:
    """The key in ``name``; generated under ``var_dir`` only when ``local``."""
    value = os.environ.get(name, "").strip()
    if value:
        return _checked(name, value)
    if not local:
        raise ImproperlyConfigured(
            f"{name} is not set: it is required whenever DATABASE_URL is set "
            "(whatever DEMO_MODE or DJANGO_DEBUG say)."
        )
    return _checked(name, local_key_file(var_dir / LOCAL_KEY_FILES[name]))


def env_fallback_keys(name: str) -> list[str]:
    """Earlier keys (comma-separated) that still verify during a rotation."""
    raw = os.environ.get(name, "")
    return [_checked(name, key.strip()) for key in raw.split(",") if key.strip()]
