"""`/v1/mcp` and `/v1/conv/mcp`: the ASGI app in front of the SDK's Streamable HTTP manager.

What it adds to the SDK, in order, for every request:

1. Host against Django's ALLOWED_HOSTS (421) and Origin against ALLOWED_CORS_HOSTS (403; a
   request without Origin is not a browser's and passes, and so does a page of this very
   server, on a Host that ALLOWED_HOSTS names explicitly), CORS preflight and headers. The
   SDK's own Host/Origin check is off: it would need a second, differently-spelled allowlist.
2. Authentication with the gateway's own credentials (a non-admin API key or a JWT, the same
   resolution as every data API). Failure is a plain 401 with the OpenAI error body and a bare
   `WWW-Authenticate: Bearer`: no OAuth discovery metadata, so clients never start an OAuth
   flow the gateway does not offer.
3. Sessions for the 2025-11-25 era, kept in Redis (mcp_server.sessions) so that any worker
   serves any request: `initialize` gets an `Mcp-Session-Id`, the GET stream delivers resource
   updates, DELETE ends the session. The SDK itself runs stateless (`stateless=True`, JSON
   responses); 2026-07-28 requests are sessionless by design and pass straight through.

The SDK manager's task group is started by mcp_server.mount on the first MCP request of each
event loop (this module is imported then, too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from accounts.auth import AsgiHeaders, Principal, aprincipal_from_headers
from gateway import context
from gateway.asgi import Message, Receive, Scope, Send
from gateway.errors import (
    Forbidden,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ServerError,
)
from gateway.middleware import log_request, request_id_from
from mcp_server import sessions
from mcp_server.mount import PATHS
from mcp_server.server import PRINCIPAL_KEY, REQUEST_ID_KEY, SESSION_KEY, build_server

logger = logging.getLogger(__name__)

SESSION_HEADER = "mcp-session-id"
_CORS_ALLOW_HEADERS = (
    "authorization, content-type, accept, mcp-protocol-version, mcp-session-id, mcp-method, mcp-name, "
    "last-event-id, openai-organization, openai-project, x-request-id"
)
_CORS_EXPOSE_HEADERS = "Mcp-Session-Id, X-Request-ID"


def owner_key(principal: Principal) -> str:
    """Who a session belongs to: the credential and the project it acts in."""
    who = f"key:{principal.api_key_id}" if principal.api_key_id is not None else f"user:{principal.user_id}"
    return f"{who}:project:{principal.project_id}"


# --- Small ASGI helpers ---------------------------------------------------------------------


async def _send_json(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    raw = [(b"content-type", b"application/json")]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    payload = orjson.dumps(body)
    raw.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


async def _send_error(send: Send, err: GatewayError, status: int | None = None) -> None:
    headers = dict(err.headers)
    if err.status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    await _send_json(send, status or err.status, err.body(), headers)


async def _send_jsonrpc_error(
    send: Send, status: int, message: str, code: int = -32600, headers: dict[str, str] | None = None
) -> None:
    await _send_json(
        send, status, {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}, headers
    )


def _origin_allowed(origin: str) -> bool:
    """ALLOWED_CORS_HOSTS, as for every API route (same-origin pages: `_same_origin`)."""
    if settings.CORS_ALLOW_ALL_ORIGINS:
        return True
    origin = origin.rstrip("/")
    if origin in settings.CORS_ALLOWED_ORIGINS:
        return True
    return any(re.match(pattern, origin) for pattern in settings.CORS_ALLOWED_ORIGIN_REGEXES)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _same_origin(origin: str, scope: Scope, host: str) -> bool:
    """A page served by this very server (Origin = our scheme://host:port).

    Only when the Host is one that ALLOWED_HOSTS names explicitly: with a wildcard, a DNS
    rebinding page would be "same-origin" with whatever Host its browser sends.
    """
    explicit = [pattern for pattern in settings.ALLOWED_HOSTS if pattern != "*"]
    domain, _port = split_domain_port(host)
    if not explicit or not validate_host(domain, explicit):
        return False
    parsed = urlsplit(origin)
    scheme = str(scope.get("scheme") or "http")
    try:
        origin_port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme)
        own = urlsplit(f"{scheme}://{host}")
        own_port = own.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a malformed port
        return False
    return (parsed.scheme, parsed.hostname, origin_port) == (scheme, own.hostname, own_port)


def _cors_headers(origin: str | None) -> list[tuple[bytes, bytes]]:
    if not origin:
        return []
    return [
        (b"access-control-allow-origin", origin.encode()),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", _CORS_EXPOSE_HEADERS.encode()),
        (b"vary", b"Origin"),
    ]


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the already-read body to the SDK, then the real channel (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _jsonrpc_call(body: bytes) -> tuple[str | None, str | None]:
    """(method, tool/prompt name or resource URI) of a JSON-RPC message, for the access log;
    the SDK does the real parsing and answers malformed bodies itself."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return None, None
    params = message.get("params")
    name = (params.get("name") or params.get("uri")) if isinstance(params, dict) else None
    return message["method"], str(name)[:200] if name else None


# --- The runtime: one SDK manager per event loop --------------------------------------------


class Runtime:
    """The SDK's session manager can be run once per instance and binds to its loop's task
    group, so there is one per loop, entered by `lifespan` (which mcp_server.mount runs)."""

    def __init__(self) -> None:
        self.server = build_server()
        self._managers: dict[asyncio.AbstractEventLoop, StreamableHTTPSessionManager] = {}

    def _new_manager(self) -> StreamableHTTPSessionManager:
        return StreamableHTTPSessionManager(
            app=self.server,
            json_response=True,
            stateless=True,
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            max_request_body_size=settings.MCP_MAX_REQUEST_BYTES,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        manager = self._new_manager()
        async with sessions.hub_running(), manager.run():
            self._managers[loop] = manager
            try:
                yield
            finally:
                self._managers.pop(loop, None)

    async def manager(self) -> StreamableHTTPSessionManager:
        """The running loop's manager, which mcp_server.mount started before the first request."""
        return self._managers[asyncio.get_running_loop()]


# --- The app ----------------------------------------------------------------------------------


class McpApp:
    def __init__(self) -> None:
        self.runtime = Runtime()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        headers = AsgiHeaders(scope.get("headers", []))
        request_id = request_id_from(headers.get("x-request-id"))
        token = context.begin(request_id=request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = dict(
                    message, headers=[*message.get("headers", []), (b"x-request-id", request_id.encode())]
                )
            await send(message)

        try:
            await self._handle(scope, receive, send_with_id, headers, request_id)
        except Exception:
            logger.exception("mcp request failed")
            if status == 0:
                await _send_error(send_with_id, ServerError("The server had an error."))
        finally:
            route = scope["path"].rstrip("/") if scope["path"].rstrip("/") in PATHS else "unmatched"
            log_request(
                route=route,
                method=scope.get("method", ""),
                path=scope.get("path", ""),
                status=status,
                started=started,
                client_ip=(scope.get("client") or [None])[0],
            )
            context.end(token)

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, headers: AsgiHeaders, request_id: str
    ) -> None:
        path = scope["path"].rstrip("/")
        if path not in PATHS:
            await _send_error(send, NotFound(f"Unknown path {scope['path']}.", code="not_found"))
            return
        host = headers.get("host") or ""
        domain, _port = split_domain_port(host)
        if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
            await _send_error(send, InvalidRequest("Invalid Host header.", code="invalid_host"), 421)
            return
        origin = headers.get("origin")
        if origin and not (_same_origin(origin, scope, host) or _origin_allowed(origin)):
            await _send_error(
                send, Forbidden("This Origin may not call the MCP endpoint.", code="origin_not_allowed")
            )
            return
        method = scope["method"]
        if method == "OPTIONS":
            await self._preflight(send, origin)
            return
        if method not in ("GET", "POST", "DELETE"):
            # Refused before the session lookup: an unknown method is wrong whatever the session.
            refusal = MethodNotAllowed(
                f"Method {method} is not allowed on {scope['path']}.",
                headers={"Allow": "GET, POST, DELETE, OPTIONS"},
            )
            await _send_error(send, refusal)
            return

        cors = _cors_headers(origin)

        async def send_cors(message: Message) -> None:
            if message["type"] == "http.response.start" and cors:
                message = dict(message, headers=[*message.get("headers", []), *cors])
            await send(message)

        try:
            principal = await aprincipal_from_headers(headers)
        except GatewayError as err:
            await _send_error(send_cors, err)
            return
        context.bind_log_fields(
            mcp_protocol_version=headers.get("mcp-protocol-version"),
            mcp_method=headers.get("mcp-method"),
            mcp_name=headers.get("mcp-name"),
        )
        child = dict(scope, path="/v1/mcp", raw_path=b"/v1/mcp")
        child[PRINCIPAL_KEY] = principal
        child[REQUEST_ID_KEY] = request_id

        version = headers.get("mcp-protocol-version")
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            if method != "POST":
                # The stateless revision has no session stream to open or end; the SDK's own 405
                # has no body nor content type.
                await _send_jsonrpc_error(
                    send_cors,
                    405,
                    f"Method Not Allowed: {method} (MCP-Protocol-Version {version} is stateless)",
                    headers={"Allow": "POST, OPTIONS"},
                )
                return
            # 2026-07-28: sessionless; the SDK validates the envelope and its headers.
            manager = await self.runtime.manager()
            await manager.handle_request(child, receive, send_cors)
            return
        await self._legacy(child, receive, send_cors, headers, principal)

    async def _preflight(self, send: Send, origin: str | None) -> None:
        raw = [
            *_cors_headers(origin),
            (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
            (b"access-control-allow-headers", _CORS_ALLOW_HEADERS.encode()),
            (b"access-control-max-age", b"600"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": raw})
        await send({"type": "http.response.body", "body": b""})

    # --- 2025-11-25 and earlier -------------------------------------------------------------

    async def _legacy(
        self, scope: Scope, receive: Receive, send: Send, headers: AsgiHeaders, principal: Principal
    ) -> None:
        store = sessions.session_store()
        session_id = headers.get(SESSION_HEADER)
        owner = owner_key(principal)
        method = scope["method"]
        if session_id is not None and await store.owner(session_id) != owner:
            # Unknown, expired, ended, or another credential's session: all look the same.
            await _send_jsonrpc_error(send, 404, "Session not found")
            return
        if method == "GET":
            await self._stream(scope, receive, send, headers, session_id)
        elif method == "DELETE":
            if session_id is None:
                await _send_jsonrpc_error(send, 400, "Bad Request: Missing session ID")
                return
            await store.delete(session_id)
            sessions.hub().end_session(session_id)
            await _send_json(send, 200, {})
        else:  # POST: other methods were refused before the session lookup
            await self._post(scope, receive, send, session_id, owner)

    async def _post(
        self, scope: Scope, receive: Receive, send: Send, session_id: str | None, owner: str
    ) -> None:
        body = await _read_body(receive, settings.MCP_MAX_REQUEST_BYTES)
        if body is None:
            await _send_jsonrpc_error(send, 413, "Payload Too Large")
            return
        method, name = _jsonrpc_call(body)
        context.bind_log_fields(mcp_method=method, mcp_name=name, mcp_session=session_id)
        manager = await self.runtime.manager()
        if session_id is not None:
            scope[SESSION_KEY] = session_id
            await manager.handle_request(scope, _replay(body, receive), send)
            return
        if method != "initialize":
            # Sessionless legacy calls are fine for tools and prompts; subscribe says it needs one.
            await manager.handle_request(scope, _replay(body, receive), send)
            return
        store = sessions.session_store()
        new_session = await store.create(owner)
        scope[SESSION_KEY] = new_session
        answered = 0

        async def send_session(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = message["status"]
                if answered < 400:
                    extra = (SESSION_HEADER.encode(), new_session.encode())
                    message = dict(message, headers=[*message.get("headers", []), extra])
            await send(message)

        try:
            await manager.handle_request(scope, _replay(body, receive), send_session)
        finally:
            if not answered or answered >= 400:
                await store.delete(new_session)

    async def _stream(
        self, scope: Scope, receive: Receive, send: Send, headers: AsgiHeaders, session_id: str | None
    ) -> None:
        """The session's standalone SSE stream: resource updates, and keep-alive comments."""
        if "text/event-stream" not in (headers.get("accept") or ""):
            await _send_jsonrpc_error(send, 406, "Not Acceptable: Client must accept text/event-stream")
            return
        if session_id is None:
            await _send_jsonrpc_error(send, 400, "Bad Request: Missing session ID")
            return
        hub = sessions.hub()
        try:
            queue = hub.open_stream(session_id)
        except sessions.StreamLimitReached:
            await _send_jsonrpc_error(send, 503, "Too many open streams; retry later", -32603)
            return
        disconnected = asyncio.Event()

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()
            queue.put_nowait(None)

        watcher = asyncio.create_task(watch_disconnect())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream"),
                        (b"cache-control", b"no-cache, no-transform"),
                        (b"x-accel-buffering", b"no"),
                        (SESSION_HEADER.encode(), session_id.encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b": stream open\n\n", "more_body": True})
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), settings.MCP_STREAM_KEEPALIVE_SECONDS)
                except TimeoutError:
                    if not await self._still_valid(headers, session_id):
                        break
                    await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                    continue
                if item is None:
                    break
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"event: message\ndata: " + item + b"\n\n",
                        "more_body": True,
                    }
                )
            if not disconnected.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            hub.close_stream(session_id, queue)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _still_valid(self, headers: AsgiHeaders, session_id: str) -> bool:
        """Checked between keep-alives: a session DELETEd on another worker, expired, or whose
        key was revoked or disabled ends the stream (touching the session keeps it alive)."""
        try:
            principal = await aprincipal_from_headers(headers)
        except GatewayError:
            return False
        return await sessions.session_store().owner(session_id) == owner_key(principal)
