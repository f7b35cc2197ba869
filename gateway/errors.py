"""The API's single error vocabulary.

Every error leaves the gateway as OpenAI's envelope
    {"error": {"message": str, "type": str, "param": str | None, "code": str | None}}
Services raise GatewayError subclasses; only this module turns them into HTTP, whether the
caller is a DRF view, a plain (async) Django view, Django's 404/500 handlers or an SSE stream.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)


class GatewayError(Exception):
    status: int = 400
    type: str = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        # Response headers the error carries (Retry-After, x-ratelimit-*), on every transport.
        self.headers: dict[str, str] = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(GatewayError):
    code = "invalid_request"


class AuthenticationError(GatewayError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class Forbidden(GatewayError):
    status, type, code = 403, "permission_error", "insufficient_permissions"


class NotFound(GatewayError):
    status, code = 404, "not_found"


class MethodNotAllowed(GatewayError):
    status, code = 405, "method_not_allowed"


class Conflict(GatewayError):
    status, code = 409, "conflict"


class RequestTooLarge(GatewayError):
    status, code = 413, "request_too_large"


class UnsupportedMediaType(GatewayError):
    status, code = 415, "unsupported_media_type"


class RateLimited(GatewayError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class ServerError(GatewayError):
    status, type, code = 500, "server_error", "internal_error"


class UpstreamError(GatewayError):
    """The model provider failed in a way that a retry may fix."""

    status, type, code = 502, "server_error", "upstream_error"


class ServiceUnavailable(GatewayError):
    status, type, code = 503, "server_error", "service_unavailable"


class UpstreamTimeout(GatewayError):
    status, type, code = 504, "server_error", "upstream_timeout"


def _first_problem(detail: Any, path: str = "") -> tuple[str | None, str]:
    """Reduce DRF's nested ValidationError detail to its first (param, message)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if value:
                name = "" if key in ("non_field_errors", "detail") else str(key)
                return _first_problem(value, f"{path}.{name}".strip(".") if name else path)
    if isinstance(detail, list):
        for index, item in enumerate(detail):
            if item:
                nested = isinstance(item, dict | list)
                return _first_problem(item, f"{path}[{index}]" if nested else path)
    return (path or None, str(detail))


def from_exception(exc: BaseException) -> GatewayError | None:
    """Map anything an API call can raise onto our vocabulary; None means "a bug"."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, RequestDataTooBig):  # over DATA_UPLOAD_MAX_MEMORY_SIZE
        return RequestTooLarge("The request body is too large.")
    if isinstance(exc, drf.ValidationError):
        param, message = _first_problem(exc.detail)
        return InvalidRequest(message, param=param)
    if isinstance(exc, drf.NotAuthenticated):
        return AuthenticationError(
            "You didn't provide an API key. Provide it in the Authorization header as 'Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    if isinstance(exc, drf.AuthenticationFailed):
        return AuthenticationError(str(exc.detail))
    if isinstance(exc, drf.PermissionDenied | DjangoPermissionDenied):
        return Forbidden("You do not have access to this resource.")
    if isinstance(exc, drf.NotFound | Http404):
        return NotFound("Not found.")
    if isinstance(exc, drf.MethodNotAllowed):
        return MethodNotAllowed(str(exc.detail))
    if isinstance(exc, drf.UnsupportedMediaType):
        return UnsupportedMediaType(str(exc.detail))
    if isinstance(exc, drf.ParseError):
        return InvalidRequest(
            f"We could not parse the JSON body of your request. ({exc.detail})", code="invalid_json"
        )
    if isinstance(exc, drf.Throttled):
        return RateLimited(str(exc.detail))
    if isinstance(exc, drf.APIException):  # 406 and the rest
        err = InvalidRequest(str(exc.detail))
        err.status = exc.status_code
        return err
    return None


def _render(body: dict[str, Any], status: int) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


def json_error(err: GatewayError) -> HttpResponse:
    """For plain (async) Django views."""
    response = _render(err.body(), err.status)
    for name, value in err.headers.items():
        response[name] = value
    return response


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]."""
    err = from_exception(exc)
    if err is None:
        return None  # unexpected: Django logs it and handler500 renders the envelope
    set_rollback()
    wait = getattr(exc, "wait", None)
    headers = {"Retry-After": str(int(wait))} if isinstance(exc, drf.Throttled) and wait else {}
    return Response(err.body(), status=err.status, headers={**err.headers, **headers} or None)


def sse_error(err: GatewayError) -> bytes:
    """Mid-stream the status line is already sent, so an error travels as a data event.

    A bare `data:` line (no `event:` name) is what the OpenAI SDKs check for an `error` key
    in a chat completion stream; they raise it as an APIError.
    """
    return b"data: " + orjson.dumps(err.body()) + b"\n\n"


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    mapped = from_exception(exception) if exception is not None else None
    return json_error(mapped or InvalidRequest("Bad request."))


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return json_error(Forbidden("You do not have access to this resource."))


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return json_error(NotFound(f"Unknown request URL: {request.method} {request.path}.", code="unknown_url"))


def handler500(request: HttpRequest) -> HttpResponse:
    return json_error(ServerError("The server had an error while processing your request."))
