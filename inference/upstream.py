"""The one place that talks to model servers: a pooled aiohttp session per event loop.

aiohttp rather than httpx on the hot path: on this machine an httpx request cost about 1 ms
of CPU and an aiohttp request about 0.09 ms (bench/README.md), and the whole proxied request
has a budget of 3 ms. The Celery health poller keeps a sync httpx client.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import weakref
from typing import TYPE_CHECKING

import aiohttp
import httpcore
import yarl
from django.conf import settings

from inference.netguard import PublicOnlyBackend, PublicOnlyResolver

if TYPE_CHECKING:
    import httpx


@functools.lru_cache(maxsize=4096)
def upstream_url(base_url: str, path: str) -> yarl.URL:
    """api_url as the parsed URL aiohttp takes: parsing a string URL was a few percent of a
    proxied call's CPU, and a provider's base URL and the endpoint paths are few."""
    return yarl.URL(api_url(base_url, path))


def api_url(base_url: str, path: str) -> str:
    """`http://host:8000` and `http://host:8000/v1` both mean the same server (JAN_INFERENCE_MODEL_URL may be given either way)."""
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return f"{root}/v1/{path.lstrip('/')}"


def _timeout() -> aiohttp.ClientTimeout:
    # sock_read bounds the gap between two reads (the idle timeout of a stream); the first
    # byte has its own bound, applied around the request in inference.chat.
    return aiohttp.ClientTimeout(
        total=None,
        connect=settings.UPSTREAM_CONNECT_TIMEOUT,
        sock_connect=settings.UPSTREAM_CONNECT_TIMEOUT,
        sock_read=settings.UPSTREAM_IDLE_TIMEOUT,
    )


_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[bool, aiohttp.ClientSession]] = (
    weakref.WeakKeyDictionary()
)


def session(*, public_only: bool = False) -> aiohttp.ClientSession:
    """The session bound to the running loop (aiohttp sessions must not cross loops).

    `public_only` sessions (organizations' own providers) connect to public addresses only
    (inference.netguard); the operator's providers use the unrestricted one.
    """
    loop = asyncio.get_running_loop()
    by_kind = _sessions.setdefault(loop, {})
    existing = by_kind.get(public_only)
    if existing is None or existing.closed:
        existing = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.UPSTREAM_MAX_CONNECTIONS,
                keepalive_timeout=settings.UPSTREAM_KEEPALIVE_SECONDS,
                ttl_dns_cache=60,
                use_dns_cache=not public_only,  # re-resolve, and so re-check, on every new connection
                resolver=PublicOnlyResolver() if public_only else None,
            ),
            timeout=_timeout(),
            # Relay bytes as they are: compressed SSE would have to be decoded and re-chunked.
            auto_decompress=False,
            trust_env=False,  # operator URLs only; no proxy variables steering model traffic
            skip_auto_headers=("User-Agent",),
            # One session serves every tenant: a cookie a model server sets for one caller must
            # not go back with another's calls. (Also spares the jar's work on every request.)
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        by_kind[public_only] = existing
    return existing


async def close_all() -> None:
    for by_kind in list(_sessions.values()):
        for existing in by_kind.values():
            await existing.close()
    _sessions.clear()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context(trust_env=False)


def sync_client(timeout: float, *, public_only: bool = False) -> httpx.Client:
    """For health polls in Celery workers. `public_only`: as for chat, connect to public
    addresses only, the very address that was checked (inference.netguard).

    httpx is imported here, not with the module: with its command-line extras (rich, pygments,
    click) it is 6.6 MB that a web worker, which proxies through aiohttp, needs only for the
    rare provider check of an admin call."""
    import httpx

    transport = None
    if public_only:
        transport = httpx.HTTPTransport(verify=_ssl_context(), retries=0, trust_env=False)
        # httpx's transport takes no network backend: its pool is swapped for one that dials
        # through the guard (as webtools.tools does for page fetches). httpx and httpcore are
        # pinned, and inference/tests/test_providers_api.py covers this seam.
        transport._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(), max_connections=4, retries=0, network_backend=PublicOnlyBackend()
        )
    return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, transport=transport)
