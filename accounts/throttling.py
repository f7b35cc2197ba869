"""Per-client-address limits on the sign-in routes (guest login, token refresh, Google callback).

DRF throttles, with the counting moved into one Redis script: DRF's own SimpleRateThrottle reads
its history, decides and writes it back in three steps, so concurrent requests on several
workers each see the same count and all pass. Here a sliding one-minute log per address is
trimmed, counted and appended atomically, on Redis's clock, so the limit holds across every
worker and replica, and a refusal knows when the oldest attempt leaves the window (Retry-After).

Without REDIS_URL (the embedded default) the same log lives in the process's local-memory cache,
per worker. If
Redis fails the request is admitted and a warning logged: a broken counter store must not lock
everybody out of signing in.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from gateway.client_address import client_address
from gateway.redis import sync_client

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60

# KEYS[1]: the address's log (a sorted set of attempt times in ms). ARGV: limit, window ms, member.
# Returns {1, 0} when admitted (and recorded), {0, ms until a slot frees} when refused.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
"""

_local_lock = threading.Lock()


def _admit_locally(key: str, limit: int) -> float:
    """The log in Django's cache, which is process memory without REDIS_URL: 0 when admitted,
    else seconds until a slot frees. The lock makes read-decide-write one step per process."""
    now = time.time()
    with _local_lock:
        log = [at for at in cache.get(key, []) if at > now - WINDOW_SECONDS]
        if len(log) < limit:
            cache.set(key, [*log, now], timeout=WINDOW_SECONDS)
            return 0.0
        return float(log[0]) + WINDOW_SECONDS - now


def _admit(key: str, limit: int) -> float:
    client = sync_client()
    if client is None:
        return _admit_locally(key, limit)
    try:
        admitted, wait_ms = client.eval(_ADMIT, 1, key, limit, WINDOW_SECONDS * 1000, secrets.token_hex(8))
    except Exception:  # any Redis failure: admit (see the module docstring)
        logger.warning("sign-in rate limit unavailable: Redis failed; request admitted", exc_info=True)
        return 0.0
    return 0.0 if admitted else max(int(wait_ms), 1) / 1000


class ClientAddressThrottle(BaseThrottle):
    """At most `setting` requests per minute from one client address, on one route."""

    scope = ""
    setting = ""

    def __init__(self) -> None:
        self._wait = 0.0

    def allow_request(self, request: Request, view: Any) -> bool:
        limit = int(getattr(settings, self.setting))
        if limit <= 0:
            return True
        key = f"signin-limit:{self.scope}:{client_address(request._request.META)}"
        self._wait = _admit(key, limit)
        return self._wait == 0.0

    def wait(self) -> float:
        """Whole seconds, rounded up: Retry-After must not invite a retry that is still refused."""
        return float(math.ceil(self._wait))


class GuestLoginThrottle(ClientAddressThrottle):
    scope, setting = "guest-login", "AUTH_GUEST_LOGIN_PER_MINUTE"


class RefreshThrottle(ClientAddressThrottle):
    scope, setting = "refresh", "AUTH_REFRESH_PER_MINUTE"


class GoogleCallbackThrottle(ClientAddressThrottle):
    scope, setting = "google-callback", "AUTH_GOOGLE_CALLBACK_PER_MINUTE"
