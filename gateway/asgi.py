"""The production entry point: `uvicorn gateway.asgi:application`.

A thin router in front of Django: ASGI apps registered in settings.ASGI_MOUNTS (the MCP server)
take their path prefixes; everything else is Django. ASGI lifespan is handled here, entering
every context manager of settings.ASGI_LIFESPAN and every mount's own lifespan at startup.
Servers without lifespan (daphne) still work: mounts must also start lazily.

In front of everything, Guard: request-body limits counted on the bytes received, and the last
resort that turns an exception escaping any of the above into the error envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from gateway.errors import GatewayError

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
        if scope["type"] == "http" and _chunked_without_length(scope["headers"]):
            scope, receive = await _with_length(scope, receive)
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
            if threading.current_thread() is threading.main_thread():
                # A server in the main thread owns the process; one in another thread (the
                # tests' in-process gateway) must not freeze its host's heap.
                settle_heap()
            await send({"type": "lifespan.startup.complete"})
            message = await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


# Young-generation collections every this many allocations instead of CPython's 700: a proxied
# call allocates a few thousand objects, and collecting after every few hundred cost CPU for
# objects that die with the request anyway.
GC_GEN0_THRESHOLD = 20_000


def settle_heap() -> None:
    """Once the app is loaded: move everything alive into the collector's permanent generation.

    Django, DRF, aiohttp and the rest leave about 150,000 tracked objects after start-up, and
    every full collection walked them all: about 100 ms here, during which the worker answered
    nothing (the open-loop benchmark's p99 spikes). Frozen, they are never walked again;
    collecting first keeps start-up garbage out of the frozen set (gc.freeze's documented use).
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def _chunked_without_length(headers: list[tuple[bytes, bytes]]) -> bool:
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            return False
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    return chunked


async def _with_length(scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
    """Read a chunked body whole and declare its length, then hand it on.

    DRF reads a body only when Content-Length says there is one, so a chunked JSON body reached
    every DRF view as empty (a conversation created without its items). Django reads the whole
    body before any view runs anyway, and Guard has bounded it by then.
    """
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left: let Django see it leave
            return scope, _first_then(message, receive)
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(parts)
    headers = [*scope["headers"], (b"content-length", str(len(body)).encode())]
    whole = {"type": "http.request", "body": body, "more_body": False}
    return dict(scope, headers=headers), _first_then(whole, receive)


def _first_then(first: Message, receive: Receive) -> Receive:
    """A receive that gives `first`, then whatever the client sends next (its disconnect)."""
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _static_files() -> Mount:
    """Admin and API-docs assets (collected by `make run`), served without a CDN or web server."""
    from starlette.staticfiles import StaticFiles

    app = StaticFiles(directory=str(settings.STATIC_ROOT), check_dir=False)
    prefix = "/" + settings.STATIC_URL.strip("/")

    async def static(scope: Scope, receive: Receive, send: Send) -> None:
        child = dict(scope, root_path=scope.get("root_path", "") + prefix, path=scope["path"][len(prefix) :])
        await app(child, receive, send)

    return Mount(prefixes=(prefix,), app=static)


# --- The outermost layer: body limits and the last resort ------------------------------------


def body_limit_for(path: str) -> int | None:
    """Bytes a request body may have on this path; None: no limit."""
    if any(path == prefix or path.startswith(prefix + "/") for prefix in settings.LARGE_BODY_PATHS):
        return int(settings.CHAT_MAX_BODY_BYTES)
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return None if limit is None else int(limit)


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _with_request_id(scope: Scope) -> tuple[Scope, str]:
    """The request id every layer below uses, made here so that our own answers carry it too."""
    from gateway.middleware import request_id_from

    headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
    given = next((value for name, value in headers if name == b"x-request-id"), None)
    request_id = request_id_from(given.decode("latin-1") if given is not None else None)
    if given is not None and given.decode("latin-1") == request_id:
        return scope, request_id
    kept = [(name, value) for name, value in headers if name != b"x-request-id"]
    return dict(scope, headers=[*kept, (b"x-request-id", request_id.encode())]), request_id


class _Exchange:
    """One request seen from outside the application: what it has received and sent."""

    def __init__(self, send: Send, request_id: str, limit: int | None) -> None:
        self._send = send
        self.request_id = request_id
        self.limit = limit
        self.received = 0
        self.started = False
        self.finished = False
        self.event_stream = False
        self.answered_by_us = False

    async def send(self, message: Message) -> None:
        if self.answered_by_us:
            return  # we have already answered (413): the application's answer has nowhere to go
        if message["type"] == "http.response.start":
            self.started = True
            self.event_stream = any(
                name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                for name, value in message.get("headers", ())
            )
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        await self._send(message)

    def receive(self, receive: Receive) -> Receive:
        async def counted() -> Message:
            if self.answered_by_us:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request" and self.limit is not None:
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    # The application sees the client leave; nothing more is read or stored.
                    await self.answer(self._too_large())
                    return {"type": "http.disconnect"}
            return message

        return counted

    def _too_large(self) -> GatewayError:
        from gateway.errors import RequestTooLarge

        return RequestTooLarge(f"The request body is larger than {self.limit} bytes.")

    async def answer(self, err: GatewayError) -> None:
        """Send an error envelope in place of the application's answer, if none has started."""
        if self.started:
            return
        import orjson

        body = orjson.dumps(err.body())
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", self.request_id.encode()),
            (b"x-content-type-options", b"nosniff"),
        ]
        if err.status == 413:
            headers.append((b"connection", b"close"))  # the rest of the body is never read
        self.started = self.finished = True
        self.answered_by_us = True
        await self._send({"type": "http.response.start", "status": err.status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    async def end_stream(self, err: GatewayError, *, json_rpc: bool = False) -> bool:
        """End an event stream cut short with an error event; False if there is none to end.

        A stream of JSON-RPC messages (MCP) just ends: an OpenAI error event would reach the
        client as an invalid JSON-RPC message, and MCP clients resume a stream that ended."""
        from gateway.errors import sse_error

        if not (self.started and self.event_stream and not self.finished):
            return False
        self.finished = True
        try:
            async with asyncio.timeout(1.0):  # a client that reads nothing does not hold us
                last_event = b"" if json_rpc else sse_error(err)
                await self._send({"type": "http.response.body", "body": last_event, "more_body": False})
        except Exception:
            logger.info("could not send the last event of a cut stream", exc_info=True)
        return True


class Guard:
    """The outermost ASGI layer, in front of every route.

    - Body limits counted on the bytes received, chunked bodies included: 413 as soon as the
      limit passes (at once when Content-Length declares more), before authentication or any
      parsing, so an anonymous caller cannot make a worker read or spool a huge body.
    - The last resort: an exception that escapes everything below becomes OpenAI's 500
      envelope if the answer has not started (never a server's plain-text 500); an event stream
      already under way ends with an error event; another answer is cut off, so the client sees
      a truncated body rather than one that looks complete.
    - A stream cancelled because the shutdown drain ran out ends with an error event; the
      layers below record its usage as they unwind. On JSON-RPC streams (MCP) the stream just
      ends, in both cases.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from gateway.errors import ServerError, ServiceUnavailable

        scope, request_id = _with_request_id(scope)
        path = scope.get("path", "")
        exchange = _Exchange(send, request_id, body_limit_for(path))
        declared = _declared_length(scope["headers"])
        if exchange.limit is not None and declared is not None and declared > exchange.limit:
            await exchange.answer(exchange._too_large())
            return
        try:
            await self.app(scope, exchange.receive(receive), exchange.send)
        except asyncio.CancelledError:
            cut = ServiceUnavailable(
                "The server is shutting down and ended this stream; retry the request.",
                code="server_shutting_down",
            )
            if not await exchange.end_stream(cut, json_rpc=path in settings.JSON_RPC_STREAM_PATHS):
                raise
        except Exception:
            logger.exception("unhandled error", extra={"request_id": request_id, "path": scope.get("path")})
            failure = ServerError("The server had an error while processing your request.")
            if not exchange.started:
                await exchange.answer(failure)
            else:
                await exchange.end_stream(failure, json_rpc=path in settings.JSON_RPC_STREAM_PATHS)


def build_application() -> GatewayRouter:
    django_app = get_asgi_application()
    mounts = [_static_files(), *(import_string(path)() for path in settings.ASGI_MOUNTS)]
    lifespans = [import_string(path) for path in settings.ASGI_LIFESPAN]
    return GatewayRouter(default=django_app, mounts=mounts, lifespans=lifespans)


application: ASGIApp = build_application()
if settings.PROFILING_ENABLED:  # ?profile=1 for owners and operators; not installed at all when off
    from gateway.profiling import OnDemandProfiler

    application = OnDemandProfiler(application)
application = Guard(application)
