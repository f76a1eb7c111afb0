"""Read typed configuration from environment variables, failing loudly on bad values."""

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean (use 1/0, true/false)."
    )


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at most {maximum}.")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip()
    matches = [c for c in choices if c.lower() == value.lower()]
    if not matches:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not one of: {', '.join(choices)}."
        )
    return matches[0]


def env_list(name: str, default: str = "") -> list[str]:
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_brokers(name: str, default: str) -> str:
    """Parse a comma-separated host:port list, as in ``kafka1:9092,kafka2:9092``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        raw = default
    brokers = [b.strip() for b in raw.split(",")]
    for broker in brokers:
        host, sep, port = broker.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(
                f"{name}={raw!r}: {broker!r} is not host:port "
                "(expected e.g. kafka1:9092,kafka2:9092)."
            )
    return ",".join(brokers)


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: str) -> float:
    """Seconds in a duration such as ``7d``, ``36h``, ``90m``, ``30s`` or ``250ms``."""
    value = raw.strip().lower()
    for unit in sorted(_DURATION_UNITS, key=len, reverse=True):
        if value.endswith(unit):
            number = value[: -len(unit)]
            break
    else:
        unit, number = "s", value
    try:
        seconds = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise ValueError(
            f"{raw!r} is not a duration (e.g. 7d, 36h, 90m, 30s)"
        ) from None
    if seconds < 0:
        raise ValueError(f"{raw!r} must not be negative")
    return seconds


def env_duration(name: str, default: str) -> float:
    """Read a duration (``7d``, ``36h``, ``90m``, ``30s``, ``250ms``) as seconds."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        raw = default
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}.") from None
