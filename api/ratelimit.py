"""Requests per API key per minute (KANRI_API_RATE_PER_MINUTE), counted in Django's cache (Redis in
production, so every web process shares the count).

A fixed window: one counter per key and clock minute, incremented atomically; a burst at a
minute's turn can reach twice the rate for a moment, the price of one cache round trip per
request.
"""
import time

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from ninja.throttling import BaseThrottle

WINDOW = 60
# The counter outlives its minute (nothing reads it after), so it never expires mid-window.
KEEP = 2 * WINDOW


def now() -> float:
    """Seconds since the epoch; the one clock the count reads (tests set it)."""
    return time.time()


def _count(name: str) -> int:
    """This request's number in its window."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        # INCR and EXPIRE in one round trip; Django's incr() asks EXISTS first (two).
        key = backend.make_and_validate_key(name)
        with backend._cache.get_client(key, write=True).pipeline() as pipe:
            count, _expires = pipe.incr(key).expire(key, KEEP).execute()
        return count
    try:  # other backends (files or memory without Redis): not atomic across processes
        return cache.incr(name)
    except ValueError:  # the window's first request
        if cache.add(name, 1, KEEP):
            return 1
        return cache.incr(name)


class PerKeyRate(BaseThrottle):
    def allow_request(self, request) -> bool:
        window = int(now()) // WINDOW
        return (_count(f"api-rate:{request.auth.pk}:{window}")
                <= settings.KANRI_API_RATE_PER_MINUTE)

    def wait(self) -> float:
        """Seconds until the window turns (ninja sends it, rounded up, as Retry-After)."""
        return WINDOW - now() % WINDOW
