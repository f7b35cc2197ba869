"""`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and `/v1/models` as a raw ASGI
app in front of Django.

Why not a Django view: Django's ASGI handler costs about 1.2 ms of CPU per request on this
machine before the view runs (request/response objects, URL resolution, and the thread hops
for `request_started`/`request_finished` and `response.close()`; see bench/README.md), which is a
third of the 3 ms budget for a whole proxied request. Here a request costs the header parse,
the key cache lookup, the registry lookup and one pooled upstream call. Everything else the
Django stack does for an API route is done here too, in the same shape: the request id
(`X-Request-ID`, also sent upstream), the JSON access log line, CORS (Starlette's middleware
configured from the same settings as django-cors-headers), the OpenAI error envelope, 405s.

The Django views in inference.views_chat serve the same routes through the same code
(inference.chat) for the Django test client, WSGI servers and the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from accounts.auth import AsgiHeaders, Headers, Principal, aprincipal_from_headers
from gateway import context, errors
from gateway.middleware import log_request, request_id_from
from inference import chat, endpoints
from inference.registry import registry
from inference.selectors import Route
from organizations.model_access import model_allowed

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
MODELS_PATH = "/v1/models"
POST_PATHS = (CHAT_PATH, COMPLETIONS_PATH, EMBEDDINGS_PATH)


@dataclass
class Reply:
    """A transport-neutral answer: a body, or a stream of SSE bytes."""

    status: int = 200
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Reply:
        return cls(status=status, body=orjson.dumps(payload))

    @classmethod
    def error(cls, err: errors.GatewayError) -> Reply:
        return cls(status=err.status, body=orjson.dumps(err.body()), headers=dict(err.headers))

    def as_django(self) -> HttpResponseBase:
        """The same answer as a Django response, for the views that serve these handlers."""
        response: HttpResponseBase
        if self.stream is not None:
            response = StreamingHttpResponse(
                self.stream, status=self.status, content_type="text/event-stream"
            )
        else:
            response = HttpResponse(self.body, status=self.status, content_type="application/json")
        for name, value in self.headers.items():
            response[name] = value
        return response


# --- The handlers (shared with the Django views) ----------------------------------------------


async def _relay(headers: Headers, raw: bytes, endpoint: str) -> Reply:
    try:
        principal = await aprincipal_from_headers(headers)
        body = _PARSERS[endpoint](raw)
        opened = await chat.open_call(principal, body, raw, endpoint=endpoint)
        limits = opened.call.admission.headers  # x-ratelimit-*, when the caller has limits
        if opened.call.stream and opened.is_sse:
            return Reply(stream=chat.relay_sse(opened), headers={**SSE_HEADERS, **limits})
        raw_answer, _ = await chat.read_completion(opened)
        return Reply(body=raw_answer, headers=dict(limits))
    except errors.GatewayError as err:
        return Reply.error(err)


_PARSERS = {
    endpoints.CHAT: chat.parse_chat_request,
    endpoints.COMPLETIONS: endpoints.parse_completions_request,
    endpoints.EMBEDDINGS: endpoints.parse_embeddings_request,
}
_ENDPOINT_OF_PATH = {
    CHAT_PATH: endpoints.CHAT,
    COMPLETIONS_PATH: endpoints.COMPLETIONS,
    EMBEDDINGS_PATH: endpoints.EMBEDDINGS,
}


async def chat_completions(headers: Headers, raw: bytes) -> Reply:
    return await _relay(headers, raw, endpoints.CHAT)


async def completions(headers: Headers, raw: bytes) -> Reply:
    """Legacy text completions: `prompt` in, `choices[].text` out; streams like chat."""
    return await _relay(headers, raw, endpoints.COMPLETIONS)


async def embeddings(headers: Headers, raw: bytes) -> Reply:
    """Embeddings, relayed as the model server sends them (float arrays or base64)."""
    return await _relay(headers, raw, endpoints.EMBEDDINGS)


async def models_list(headers: Headers) -> Reply:
    try:
        principal = await aprincipal_from_headers(headers)
    except errors.GatewayError as err:
        return Reply.error(err)
    routes = await registry.models_for(principal.organization_id, principal.project_id)
    return Reply.json(
        {"object": "list", "data": [model_object(route) for route in routes if _may_use(principal, route)]}
    )


async def model_retrieve(headers: Headers, model: str) -> Reply:
    try:
        principal = await aprincipal_from_headers(headers)
    except errors.GatewayError as err:
        return Reply.error(err)
    for route in await registry.models_for(principal.organization_id, principal.project_id):
        if route.model_id == model and _may_use(principal, route):
            return Reply.json(model_object(route))
    return Reply.error(chat.model_not_found(model))


def _may_use(principal: Principal, route: Route) -> bool:
    return not principal.model_access or model_allowed(principal.model_access, route.model_id)


def model_object(route: Route) -> dict[str, Any]:
    return {"id": route.model_id, "object": "model", "created": route.created, "owned_by": route.owned_by}


# --- The ASGI app ----------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _route_label(path: str) -> str:
    """The metrics route label: a template, so model ids do not each get a time series."""
    if path in POST_PATHS:
        return path
    return MODELS_PATH if path in (MODELS_PATH, MODELS_PATH + "/") else MODELS_PATH + "/{model}"


def _method_not_allowed(method: str, path: str, allowed: str) -> Reply:
    reply = Reply.error(errors.MethodNotAllowed(f"Method {method} is not allowed on {path}."))
    reply.headers["allow"] = allowed
    return reply


class HotPath:
    """The ASGI app mounted at the inference routes and /v1/models (see gateway.asgi)."""

    def __init__(self) -> None:
        from starlette.middleware.cors import CORSMiddleware

        regexes = settings.CORS_ALLOWED_ORIGIN_REGEXES
        self.app = CORSMiddleware(
            self.serve,  # type: ignore[arg-type]
            allow_origins=["*"] if settings.CORS_ALLOW_ALL_ORIGINS else list(settings.CORS_ALLOWED_ORIGINS),
            allow_origin_regex="|".join(f"(?:{regex})" for regex in regexes) if regexes else None,
            allow_credentials=settings.CORS_ALLOW_CREDENTIALS,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=list(settings.CORS_ALLOW_HEADERS),
            expose_headers=list(settings.CORS_EXPOSE_HEADERS),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, _ in scope["headers"]:
            if name == b"origin":
                await self.app(scope, receive, send)  # type: ignore[arg-type]
                return
        # Not a browser's request: CORS adds only `Vary: Origin`, which _send writes itself,
        # without the middleware's header rewriting on every answer (about 3 % of the CPU).
        await self.serve(scope, receive, send, vary_origin=True)

    async def serve(self, scope: Scope, receive: Receive, send: Send, *, vary_origin: bool = False) -> None:
        started = time.perf_counter()
        headers = AsgiHeaders(scope["headers"])
        request_id = request_id_from(headers.get("x-request-id"))
        token = context.begin(request_id=request_id)
        state: dict[str, Any] = {"status": 500, "streaming": False, "vary_origin": vary_origin}
        try:
            await self._dispatch(scope, headers, receive, send, request_id, state)
        finally:
            client = scope.get("client")
            log_request(
                route=_route_label(scope["path"]),
                method=scope["method"],
                path=scope["path"],
                status=state["status"],
                started=started,
                client_ip=client[0] if client else None,
                streaming=state["streaming"],
            )
            context.end(token)

    async def _dispatch(
        self,
        scope: Scope,
        headers: AsgiHeaders,
        receive: Receive,
        send: Send,
        request_id: str,
        state: dict[str, Any],
    ) -> None:
        method, path = scope["method"], scope["path"]
        if path in POST_PATHS:
            if method != "POST":
                await self._send(send, _method_not_allowed(method, path, "POST"), request_id, state)
                return
            try:
                raw = await _read_body(receive, settings.CHAT_MAX_BODY_BYTES)
            except _BodyTooLarge:
                too_large = errors.RequestTooLarge("The request body is too large.")
                await self._send(send, Reply.error(too_large), request_id, state)
                return
            except asyncio.CancelledError:
                state["status"] = 499
                return
            work = self._call(headers, raw, _ENDPOINT_OF_PATH[path], send, request_id, state)
            await self._race_disconnect(work, receive, state)
            return
        if not (path == MODELS_PATH or path.startswith(MODELS_PATH + "/")):
            # Below an inference route (`/v1/embeddings/x`): the mount takes the prefix, Django
            # would answer this with its 404.
            unknown = errors.NotFound(f"Unknown request URL: {method} {path}.", code="unknown_url")
            await self._send(send, Reply.error(unknown), request_id, state)
            return
        if method != "GET":
            await self._send(send, _method_not_allowed(method, path, "GET"), request_id, state)
            return
        if path == MODELS_PATH or path == MODELS_PATH + "/":
            reply = await models_list(headers)
        else:
            reply = await model_retrieve(headers, path[len(MODELS_PATH) + 1 :])
        await self._send(send, reply, request_id, state)

    async def _call(
        self,
        headers: AsgiHeaders,
        raw: bytes,
        endpoint: str,
        send: Send,
        request_id: str,
        state: dict[str, Any],
    ) -> None:
        await self._send(send, await _relay(headers, raw, endpoint), request_id, state)

    @staticmethod
    async def _race_disconnect(work: Awaitable[None], receive: Receive, state: dict[str, Any]) -> None:
        """Run the call; if the client goes away first, cancel it (which closes the upstream).

        The call runs in this task and a watcher task cancels it on a disconnect: one task per
        call instead of two and an asyncio.wait. A disconnect that uvicorn reports because the
        answer is complete (`state["answered"]`) cancels nothing.
        """
        current = asyncio.current_task()
        assert current is not None  # noqa: S101 -- always inside the request's task
        cancelled_by_watcher = False

        async def watch() -> None:
            nonlocal cancelled_by_watcher
            await _disconnected(receive)
            if not state.get("answered"):
                cancelled_by_watcher = True
                current.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await work
        except asyncio.CancelledError:
            # Cancelled by anything else too (server shutdown): that cancellation goes on.
            if not cancelled_by_watcher or current.uncancel() > 0:
                raise
            state["status"] = 499
        else:
            if cancelled_by_watcher:  # the call swallowed our cancellation: balance the count
                current.uncancel()
        finally:
            watcher.cancel()

    @staticmethod
    async def _send(send: Send, reply: Reply, request_id: str, state: dict[str, Any]) -> None:
        state["status"] = reply.status
        content_type = b"text/event-stream" if reply.stream is not None else b"application/json"
        raw_headers = [
            (b"content-type", content_type),
            (b"x-request-id", request_id.encode()),
            (b"x-content-type-options", b"nosniff"),
        ]
        raw_headers.extend(
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers.items()
        )
        if state["vary_origin"]:
            raw_headers.append((b"vary", b"Origin"))
        if reply.stream is None:
            raw_headers.append((b"content-length", str(len(reply.body)).encode()))
            await send({"type": "http.response.start", "status": reply.status, "headers": raw_headers})
            await send({"type": "http.response.body", "body": reply.body})
            state["answered"] = True
            return
        state["streaming"] = True
        stream = reply.stream
        try:
            await send({"type": "http.response.start", "status": reply.status, "headers": raw_headers})
            async for part in stream:
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            state["answered"] = True
        finally:
            await stream.aclose()  # type: ignore[attr-defined]


def mount() -> Any:
    """settings.ASGI_MOUNTS entry: the hot path's exact routes."""
    from gateway.asgi import Mount

    return Mount(prefixes=(*POST_PATHS, MODELS_PATH), app=HotPath())
