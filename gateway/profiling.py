"""Profiling, jan-server's pprof/Pyroscope in Python form.

- Continuous: when PYROSCOPE_SERVER_ADDRESS is set, every web worker (ASGI lifespan) and every
  Celery worker process (`worker_process_init`, gateway.celery) sends CPU profiles to Pyroscope
  with the `pyroscope-io` SDK, tagged with the process kind. Off when the address is unset.
- On demand: with PROFILING_ENABLED (off by default), an organization owner, an admin key or a
  staff user adds `?profile=1` (or `=html`, `=speedscope`, `=text`) to any request and gets
  pyinstrument's profile of that one request instead of its answer; the request itself still
  runs and takes effect. `X-Profiled-Status` carries the status the answer had. Anyone else is
  refused (403). pyinstrument follows the request's own coroutines: work handed to a thread
  pool (sync Django views, database calls through `run_sync`) shows as the await that waited.
  When the setting is off the wrapper is not installed at all, so it costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from django.conf import settings
from django.utils.module_loading import import_string

from gateway import errors
from gateway.background import run_sync

logger = logging.getLogger(__name__)

Scope = Any
Message = Any
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_started = False


# --- Continuous profiling (Pyroscope) ---------------------------------------------------------


def start_continuous(process: str) -> bool:
    """Start sending profiles to Pyroscope from this process, once; False when not configured."""
    global _started
    address = settings.PYROSCOPE_SERVER_ADDRESS
    if not address or _started:
        return False
    import pyroscope

    token = settings.PYROSCOPE_AUTH_TOKEN
    pyroscope.configure(
        application_name=settings.PYROSCOPE_APPLICATION_NAME,
        server_address=address,
        sample_rate=settings.PYROSCOPE_SAMPLE_RATE,
        upload_interval=settings.PYROSCOPE_UPLOAD_INTERVAL_SECONDS,
        http_headers={"Authorization": f"Bearer {token}"} if token else {},
        tags={"process": process, "env": settings.GATEWAY_ENV},
    )
    _started = True
    logger.info("continuous profiling started", extra={"profiled_process": process, "pyroscope": address})
    return True


def stop_continuous() -> None:
    global _started
    if not _started:
        return
    import pyroscope

    with contextlib.suppress(Exception):
        pyroscope.shutdown()
    _started = False


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    """Web worker lifetime (settings.ASGI_LIFESPAN)."""
    start_continuous("web")
    yield
    stop_continuous()


# --- One request, on demand (pyinstrument) ---------------------------------------------------------

_FORMATS = {"1": "html", "true": "html", "html": "html", "speedscope": "speedscope", "text": "text"}


def _format_of(scope: Scope) -> str | None:
    query = scope.get("query_string", b"")
    if b"profile=" not in query:  # the cheap test first: most requests never parse their query here
        return None
    values = parse_qs(query.decode("latin-1")).get("profile")
    return _FORMATS.get(values[-1].lower()) if values else None


def _render(profiler: Any, kind: str) -> tuple[bytes, bytes]:
    if kind == "speedscope":
        from pyinstrument.renderers import SpeedscopeRenderer

        return profiler.output(renderer=SpeedscopeRenderer()).encode(), b"application/json"
    if kind == "text":
        return profiler.output_text(unicode=True, color=False).encode(), b"text/plain; charset=utf-8"
    return profiler.output_html().encode(), b"text/html; charset=utf-8"


class OnDemandProfiler:
    """ASGI wrapper around the whole application (gateway.asgi installs it when enabled)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = _format_of(scope) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        if not await _allowed(scope):
            refused = errors.Forbidden(
                "Profiling a request is for organization owners and operators.", code="profiling_not_allowed"
            )
            await _send(send, refused.status, orjson.dumps(refused.body()), b"application/json", [])
            return
        from pyinstrument import Profiler

        answer: dict[str, Any] = {"status": 500, "headers": []}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = message.get("headers", [])
            # the answer's body is dropped: the profile is sent instead

        profiler = Profiler(interval=0.0005, async_mode="enabled")
        profiler.start()
        try:
            await self.app(scope, receive, capture)
        finally:
            profiler.stop()
        body, content_type = _render(profiler, kind)
        kept = [(name, value) for name, value in answer["headers"] if name.lower() == b"x-request-id"]
        await _send(
            send, 200, body, content_type, [(b"x-profiled-status", str(answer["status"]).encode()), *kept]
        )


async def _send(send: Send, status: int, body: bytes, content_type: bytes, headers: list[Any]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _allowed(scope: Scope) -> bool:
    """settings.PROFILING_AUTHORIZER decides from the request headers (it lives in accounts,
    which this module may not import); any failure to authenticate is a refusal."""
    authorizer: Callable[[list[tuple[bytes, bytes]]], bool] = import_string(settings.PROFILING_AUTHORIZER)
    try:
        return bool(await run_sync(authorizer, scope.get("headers", [])))
    except errors.GatewayError:
        return False
