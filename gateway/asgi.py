"""The production entry point: `uvicorn gateway.asgi:application`.

A thin router in front of Django: ASGI apps registered in settings.ASGI_MOUNTS (the MCP server)
take their path prefixes; everything else is Django. ASGI lifespan is handled here, entering
every context manager of settings.ASGI_LIFESPAN and every mount's own lifespan at startup.
Servers without lifespan (daphne) still work: mounts must also start lazily.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.utils.module_loading import import_string

Scope = Any  # ASGI scope/message dicts; servers and frameworks type them differently
Message = Any
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Lifespan = Callable[[], contextlib.AbstractAsyncContextManager[Any]]

logger = logging.getLogger(__name__)


@dataclass
class Mount:
    """An ASGI app served at exact paths or under path prefixes."""

    prefixes: tuple[str, ...]
    app: ASGIApp
    lifespan: Lifespan | None = None

    def matches(self, path: str) -> bool:
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.prefixes)


@dataclass
class GatewayRouter:
    default: ASGIApp
    mounts: list[Mount] = field(default_factory=list)
    lifespans: list[Lifespan] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path = scope.get("path", "")
        for mount in self.mounts:
            if mount.matches(path):
                await mount.app(scope, receive, send)
                return
        await self.default(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        async with contextlib.AsyncExitStack() as stack:
            message = await receive()
            assert message["type"] == "lifespan.startup"  # noqa: S101 -- the ASGI protocol's order
            try:
                for lifespan in self.lifespans:
                    await stack.enter_async_context(lifespan())
                for mount in self.mounts:
                    if mount.lifespan is not None:
                        await stack.enter_async_context(mount.lifespan())
            except Exception as exc:
                logger.exception("startup failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
            message = await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


def _static_files() -> Mount:
    """Admin and API-docs assets (collected by `make run`), served without a CDN or web server."""
    from starlette.staticfiles import StaticFiles

    app = StaticFiles(directory=str(settings.STATIC_ROOT), check_dir=False)
    prefix = "/" + settings.STATIC_URL.strip("/")

    async def static(scope: Scope, receive: Receive, send: Send) -> None:
        child = dict(scope, root_path=scope.get("root_path", "") + prefix, path=scope["path"][len(prefix) :])
        await app(child, receive, send)

    return Mount(prefixes=(prefix,), app=static)


def build_application() -> GatewayRouter:
    django_app = get_asgi_application()
    mounts = [_static_files(), *(import_string(path)() for path in settings.ASGI_MOUNTS)]
    lifespans = [import_string(path) for path in settings.ASGI_LIFESPAN]
    return GatewayRouter(default=django_app, mounts=mounts, lifespans=lifespans)


application: ASGIApp = build_application()
if settings.PROFILING_ENABLED:  # ?profile=1 for owners and operators; not installed at all when off
    from gateway.profiling import OnDemandProfiler

    application = OnDemandProfiler(application)
