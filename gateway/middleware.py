"""Request middleware. All of it is natively async: Django would otherwise spend a thread hop
per middleware per request, and the chat hot path cannot afford that (measured: bench/README.md)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.module_loading import import_string

from gateway import context, errors, metrics
from gateway.client_address import client_address

access_log = logging.getLogger("gateway.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
# Browser-facing pages (admin, allauth, docs) still get Django's session/CSRF/auth stack.
_BROWSER_PREFIXES = ("/admin", "/accounts/", "/api/swagger", "/api/docs")

GetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]

_ERRORS_BY_STATUS: dict[int, type[errors.GatewayError]] = {
    400: errors.InvalidRequest,
    401: errors.AuthenticationError,
    403: errors.Forbidden,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    415: errors.UnsupportedMediaType,
    500: errors.ServerError,
}


def request_id_from(header: str | None) -> str:
    """Keep a caller's id only if it is short and plain; anything else could forge log lines."""
    if header and _REQUEST_ID.match(header):
        return header
    return str(uuid.uuid4())


class RequestContextMiddleware:
    """Request id, the JSON error envelope for non-JSON error pages, and one access log line."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        request_id = request_id_from(request.headers.get("X-Request-ID"))
        token = context.begin(request_id=request_id)
        try:
            response = await self.get_response(request)
            response = _ensure_json_error(request, response)
            response["X-Request-ID"] = request_id
            response.setdefault("X-Content-Type-Options", "nosniff")
            log_request(
                route=_route_of(request),
                method=request.method or "",
                path=request.path,
                status=response.status_code,
                started=started,
                client_ip=client_address(request.META),
                streaming=response.streaming,
            )
            return response
        finally:
            context.end(token)


def _route_of(request: HttpRequest) -> str:
    """The route template as the metrics label: raw paths would make a time series per id."""
    match = request.resolver_match
    return "/" + str(match.route) if match is not None else "unmatched"


def log_request(
    *,
    route: str,
    method: str,
    path: str,
    status: int,
    started: float,
    client_ip: str | None,
    streaming: bool | None = None,
) -> None:
    """The one access line and request metric per request, for Django and the raw ASGI apps
    (hot path, MCP) alike; the ids the principal bound to the context go on the line."""
    elapsed = time.perf_counter() - started
    metrics.request_observed(route, method, status, elapsed)
    line: dict[str, Any] = {
        "request_id": context.request_id(),
        "method": method,
        "path": path,
        "status": status,
        "latency_ms": round(elapsed * 1000, 2),
        "client_ip": client_ip,
    }
    if streaming is not None:
        line["streaming"] = streaming
    access_log.info("request", extra={**line, **(context.current() or {}).get("log", {})})


def _ensure_json_error(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Django's own 405/403 (CSRF) pages are HTML; the API answers JSON only."""
    if response.status_code < 400 or response.streaming or request.path.startswith("/admin"):
        return response
    if response.get("Content-Type", "").startswith("application/json"):
        return response
    error_class = _ERRORS_BY_STATUS.get(response.status_code)
    if error_class is None:
        error_class = errors.ServerError if response.status_code >= 500 else errors.InvalidRequest
    message = {
        405: f"Method {request.method} is not allowed on {request.path}.",
        403: "You do not have access to this resource.",
    }.get(response.status_code, "The request could not be processed.")
    rendered = errors.json_error(error_class(message))
    rendered.status_code = response.status_code
    if "Allow" in response:
        rendered["Allow"] = response["Allow"]
    return rendered


class BrowserOnlyMiddleware:
    """Runs Django's session, CSRF, auth, messages and allauth middleware for browser pages only.

    API routes authenticate by bearer token and need none of it; skipping it keeps the hot path
    free of the thread hops those sync-style middlewares cost under ASGI.
    """

    async_capable = True
    sync_capable = False

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        handler: GetResponse = get_response
        for path in reversed(settings.BROWSER_MIDDLEWARE):
            handler = import_string(path)(handler)
        self.browser_handler = handler
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path.startswith(_BROWSER_PREFIXES):
            return await self.browser_handler(request)
        return await self.get_response(request)
