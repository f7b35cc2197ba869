"""Shared Redis clients: one sync client per process, one async client per event loop.

Used where Django's cache API is too slow or too narrow: the API-key cache on the hot path
(async, no thread hop), locks, counters and cross-worker signals. None when REDIS_URL is unset.
"""

from __future__ import annotations

import asyncio
import weakref
from functools import cache

import redis
import redis.asyncio as aredis
from django.conf import settings


@cache
def sync_client() -> redis.Redis | None:
    if not settings.REDIS_URL:
        return None
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def async_client() -> aredis.Redis | None:
    """The client bound to the running loop (a redis.asyncio client must not cross loops)."""
    if not settings.REDIS_URL:
        return None
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        _async_clients[loop] = client
    return client
