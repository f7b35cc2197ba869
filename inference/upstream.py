"""The one place that talks to model servers: a pooled httpx client per event loop."""

from __future__ import annotations

import asyncio
import weakref

import httpx
from django.conf import settings


def api_url(base_url: str, path: str) -> str:
    """`http://host:8000` and `http://host:8000/v1` both mean the same server (DESIGN §3)."""
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return f"{root}/v1/{path.lstrip('/')}"


def _timeout() -> httpx.Timeout:
    # `read` bounds the gap between two chunks (idle); the first byte has its own bound,
    # applied around the send in inference.proxy.
    return httpx.Timeout(
        connect=settings.UPSTREAM_CONNECT_TIMEOUT,
        read=settings.UPSTREAM_IDLE_TIMEOUT,
        write=settings.UPSTREAM_CONNECT_TIMEOUT,
        pool=settings.UPSTREAM_CONNECT_TIMEOUT,
    )


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    existing = _clients.get(loop)
    if existing is None or existing.is_closed:
        existing = httpx.AsyncClient(
            timeout=_timeout(),
            limits=httpx.Limits(
                max_connections=settings.UPSTREAM_MAX_CONNECTIONS,
                max_keepalive_connections=settings.UPSTREAM_MAX_CONNECTIONS,
                keepalive_expiry=30,
            ),
            follow_redirects=False,
            trust_env=False,  # operator URLs only; no proxy variables steering model traffic
        )
        _clients[loop] = existing
    return existing


async def close_all() -> None:
    for existing in list(_clients.values()):
        await existing.aclose()
    _clients.clear()


def sync_client(timeout: float) -> httpx.Client:
    """For health polls in Celery workers."""
    return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)
