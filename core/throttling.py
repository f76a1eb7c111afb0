"""Rate limits counted in a store every web process shares, one round trip per check.

The default store is an upsert on a counter table in the project's database; with a
``CACHE_URL`` naming Redis it is Redis. A window opens at a client's first hit and
lasts the rate's period (a fixed window per client: no burst at a clock boundary).
On PostgreSQL the counter table is UNLOGGED (migration core 0002): a hit's commit
waits for no WAL flush, and a crash of the database starts every window afresh.
"""

import functools
import math
import random
import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import BaseThrottle

from core.client_ip import client_ip
from core.rates import parse_rate

_UPSERT = """
INSERT INTO core_rate_counter (key, count, window_ends) VALUES (%s, 1, %s)
ON CONFLICT (key) DO UPDATE SET
    count = CASE WHEN core_rate_counter.window_ends <= %s THEN 1
                 ELSE core_rate_counter.count + 1 END,
    window_ends = CASE WHEN core_rate_counter.window_ends <= %s
                       THEN excluded.window_ends
                       ELSE core_rate_counter.window_ends END
RETURNING count, window_ends
"""
# About one check in this many also deletes the windows that have ended.
_PURGE_ONE_IN = 1000


class DatabaseCounterStore:
    """Counters in ``core_rate_counter``: one INSERT .. ON CONFLICT .. RETURNING."""

    def hit(self, key: str, period: int) -> tuple[int, float]:
        """Count one hit; the count in the window and the seconds until it ends."""
        now = time.time()
        with connection.cursor() as cursor:
            cursor.execute(_UPSERT, [key, now + period, now, now])
            count, window_ends = cursor.fetchone()
            if random.randrange(_PURGE_ONE_IN) == 0:
                cursor.execute(
                    "DELETE FROM core_rate_counter WHERE window_ends <= %s", [now]
                )
        return count, window_ends - now


class RedisCounterStore:
    """Counters in Redis: INCR, EXPIRE NX and TTL in one pipelined round trip."""

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url)

    def hit(self, key: str, period: int) -> tuple[int, float]:
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(f"throttle:{key}")
        pipe.expire(f"throttle:{key}", period, nx=True)
        pipe.ttl(f"throttle:{key}")
        count, _, ttl = pipe.execute()
        return count, float(max(ttl, 0))


@functools.cache
def _redis_store(url: str) -> RedisCounterStore:
    return RedisCounterStore(url)


def counter_store():
    """The store named by settings: Redis for a redis:// CACHE_URL, else the database."""
    url = settings.CACHE_URL
    if url.startswith(("redis://", "rediss://", "unix://")):
        return _redis_store(url)
    return DatabaseCounterStore()


def check_rate(scope: str, ident: str, rate: str) -> tuple[bool, float]:
    """Count a hit of ``ident`` in ``scope``; whether it is allowed, and the wait."""
    allowed, period = parse_rate(rate)
    count, remaining = counter_store().hit(f"{scope}:{ident}", period)
    return count <= allowed, math.ceil(remaining)


class SharedRateThrottle(BaseThrottle):
    """A DRF throttle counted in the shared store; the rate is read per request."""

    scope = ""
    rate_setting = ""

    def get_ident(self, request) -> str:
        return client_ip(request)

    def allow_request(self, request, view) -> bool:
        rate = getattr(settings, self.rate_setting)
        allowed, self._wait = check_rate(self.scope, self.get_ident(request), rate)
        return allowed

    def wait(self) -> float:
        return self._wait


class AuthRateThrottle(SharedRateThrottle):
    """Register, token and refresh, per client address (AUTH_THROTTLE_RATE)."""

    scope = "auth"
    rate_setting = "AUTH_THROTTLE_RATE"


class BookingRateThrottle(SharedRateThrottle):
    """Booking changes per user (BOOKING_THROTTLE_RATE); reads are not counted."""

    scope = "booking"
    rate_setting = "BOOKING_THROTTLE_RATE"

    def get_ident(self, request) -> str:
        return f"user-{request.user.pk}"

    def allow_request(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)


def throttle_posts(view, *, scope: str, rate_setting: str):
    """Wrap a plain Django view (the admin login) so its POSTs are rate limited."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.method == "POST":
            rate = getattr(settings, rate_setting)
            allowed, wait = check_rate(scope, client_ip(request), rate)
            if not allowed:
                response = JsonResponse(
                    {"detail": f"Too many attempts; retry in {wait} seconds."},
                    status=429,
                )
                response["Retry-After"] = str(wait)
                return response
        return view(request, *args, **kwargs)

    return wrapped
