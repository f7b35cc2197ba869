"""The hot path: /v1/chat/completions and /v1/models as plain async views.

Per request, once warm: authentication from the key cache, routing from the in-memory
registry, one pooled upstream call, SSE relayed event by event as it arrives, a usage row
appended to an in-memory batch. No database query and no thread hop.

The client's JSON goes upstream byte for byte, except that a stream always asks the upstream
for usage (`stream_options.include_usage`) so it can be recorded; the usage chunk is passed on
only when the client asked for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET, require_POST

from accounts.auth import Principal, aprincipal_from_request
from gateway import context, errors
from gateway.background import fire_and_forget
from inference.models import UsageRecord
from inference.registry import registry
from inference.selectors import Route
from inference.services import provider_record_failure
from inference.upstream import api_url, client
from inference.usage import usage_buffer

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_DONE = b"data: [DONE]\n\n"
_MAX_ATTEMPTS = 2  # a failure before the first byte is retried once, on another provider


def _json(payload: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")


@dataclass
class Call:
    """What one proxied request records about itself."""

    principal: Principal
    model: str
    stream: bool
    started: float = field(default_factory=time.perf_counter)
    route: Route | None = None
    first_byte_at: float | None = None
    usage: dict[str, Any] | None = None
    status_code: int = 200
    outcome: str = UsageRecord.Outcome.SUCCESS

    def record(self) -> None:
        usage = self.usage or {}
        now = time.perf_counter()
        usage_buffer.add(
            organization_id=self.principal.organization_id,
            project_id=self.principal.project_id,
            api_key_id=self.principal.api_key_id,
            user_id=self.principal.user_id,
            model=self.model[:300],
            provider_id=self.route.provider_id if self.route else None,
            stream=self.stream,
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            total_tokens=_count(usage.get("total_tokens")),
            latency_ms=round((now - self.started) * 1000, 2),
            time_to_first_token_ms=round((self.first_byte_at - self.started) * 1000, 2)
            if self.first_byte_at
            else None,
            status_code=self.status_code,
            outcome=self.outcome,
            request_id=context.request_id() or "",
        )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _parse_request(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        raise errors.InvalidRequest(
            "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise errors.InvalidRequest(
            "you must provide a model parameter", param="model", code="missing_required_parameter"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise errors.InvalidRequest(
            "messages must be a non-empty array of message objects.", param="messages", code="invalid_value"
        )
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise errors.InvalidRequest("stream must be a boolean.", param="stream", code="invalid_type")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise errors.InvalidRequest(
            "stream_options must be an object.", param="stream_options", code="invalid_type"
        )
    return body


def _upstream_error(status: int, raw: bytes) -> errors.GatewayError:
    """Map an upstream error answer onto ours, keeping its message where it has one."""
    message = ""
    code = None
    param = None
    try:
        parsed = orjson.loads(raw)
        detail = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(detail, dict):
            message = str(detail.get("message") or "")
            code = detail.get("code") if isinstance(detail.get("code"), str) else None
            param = detail.get("param") if isinstance(detail.get("param"), str) else None
        elif isinstance(detail, str):
            message = detail
        elif isinstance(parsed, dict) and isinstance(parsed.get("detail"), str):
            message = parsed["detail"]
    except (orjson.JSONDecodeError, AttributeError):
        pass
    if status >= 500:
        return errors.UpstreamError(f"The model server failed ({status}). {message}".strip())
    err = errors.InvalidRequest(message or f"The model server refused the request ({status}).", param=param)
    err.status = status if status in (400, 404, 409, 413, 422, 429) else 400
    err.code = code or "upstream_invalid_request"
    if status == 429:
        err.type, err.code = "rate_limit_error", code or "rate_limit_exceeded"
    return err


async def _open(route: Route, payload: bytes, stream: bool) -> httpx.Response:
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        # Relay bytes as they are; compressed SSE would have to be decoded and re-chunked.
        "Accept-Encoding": "identity",
    }
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    if request_id := context.request_id():
        headers["X-Request-ID"] = request_id
    http = client()
    request = http.build_request(
        "POST", api_url(route.base_url, "chat/completions"), content=payload, headers=headers
    )
    return await asyncio.wait_for(
        http.send(request, stream=True), timeout=settings.UPSTREAM_FIRST_BYTE_TIMEOUT
    )


async def _fail_provider(route: Route, error: str) -> None:
    """Circuit breaker: out of this worker's rotation now, out of everyone's after the write."""
    registry.eject(route.provider_id)
    fire_and_forget(provider_record_failure, provider_id=route.provider_id, error=error, eject=True)


async def _connect(call: Call, routes: list[Route], payload: bytes) -> httpx.Response:
    """Open the upstream response, failing over once on errors before the first byte."""
    last_error: errors.GatewayError = errors.ServiceUnavailable(
        f"No healthy model server is serving '{call.model}' right now.", code="model_unavailable"
    )
    for route in routes[:_MAX_ATTEMPTS]:
        call.route = route
        try:
            response = await _open(route, payload, call.stream)
        except TimeoutError:
            last_error = errors.UpstreamTimeout("The model server did not answer in time.")
            call.outcome = UsageRecord.Outcome.TIMEOUT
            await _fail_provider(route, "no first byte before UPSTREAM_FIRST_BYTE_TIMEOUT")
            continue
        except httpx.TimeoutException:
            last_error = errors.UpstreamTimeout("The model server did not answer in time.")
            call.outcome = UsageRecord.Outcome.TIMEOUT
            await _fail_provider(route, "connect timeout")
            continue
        except httpx.HTTPError as exc:
            last_error = errors.UpstreamError("Could not reach the model server.")
            call.outcome = UsageRecord.Outcome.UPSTREAM_ERROR
            await _fail_provider(route, f"{type(exc).__name__}: {exc}")
            continue
        if response.status_code >= 500:
            raw = await response.aread()
            await response.aclose()
            last_error = _upstream_error(response.status_code, raw)
            call.outcome = UsageRecord.Outcome.UPSTREAM_ERROR
            await _fail_provider(route, f"HTTP {response.status_code}")
            continue
        return response
    call.status_code = last_error.status
    raise last_error


@require_POST
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    try:
        principal = await aprincipal_from_request(request)
        body = _parse_request(request.body)
    except errors.GatewayError as invalid:
        return errors.json_error(invalid)
    call = Call(principal=principal, model=body["model"], stream=bool(body.get("stream")))
    routes, known = await registry.routes_for(call.model, principal.organization_id, principal.project_id)
    if not known:
        return errors.json_error(
            errors.NotFound(
                f"The model '{call.model}' does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        )

    payload = request.body
    wants_usage = False
    if call.stream:
        options = body.get("stream_options") or {}
        wants_usage = options.get("include_usage") is True
        if not wants_usage:
            body["stream_options"] = {**options, "include_usage": True}
            payload = orjson.dumps(body)
    try:
        response = await _connect(call, routes, payload)
    except errors.GatewayError as failure:
        call.record()
        return errors.json_error(failure)

    if response.status_code >= 400:
        raw = await response.aread()
        await response.aclose()
        refused = _upstream_error(response.status_code, raw)
        call.status_code, call.outcome = refused.status, UsageRecord.Outcome.CLIENT_ERROR
        call.record()
        return errors.json_error(refused)

    is_sse = response.headers.get("content-type", "").startswith("text/event-stream")
    if call.stream and is_sse:
        return StreamingHttpResponse(
            _relay(call, response, wants_usage), content_type="text/event-stream", headers=SSE_HEADERS
        )
    return await _complete(call, response)


async def _complete(call: Call, response: httpx.Response) -> HttpResponse:
    try:
        raw = await response.aread()
    except httpx.HTTPError:
        call.status_code, call.outcome = 502, UsageRecord.Outcome.UPSTREAM_ERROR
        call.record()
        return errors.json_error(errors.UpstreamError("The model server closed the connection early."))
    finally:
        await response.aclose()
    call.first_byte_at = time.perf_counter()
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        call.status_code, call.outcome = 502, UsageRecord.Outcome.UPSTREAM_ERROR
        call.record()
        return errors.json_error(errors.UpstreamError("The model server sent an empty or malformed answer."))
    usage = parsed.get("usage")
    call.usage = usage if isinstance(usage, dict) else None
    call.record()
    return HttpResponse(raw, content_type="application/json")


def _usage_of(event: bytes) -> tuple[dict[str, Any] | None, bool]:
    """(usage, is a usage-only chunk) for an event that carries a usage object."""
    data = event[event.find(b"{") :]
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, False
    if not isinstance(chunk, dict) or not isinstance(chunk.get("usage"), dict):
        return None, False
    return chunk["usage"], not chunk.get("choices")


async def _relay(call: Call, response: httpx.Response, wants_usage: bool) -> AsyncIterator[bytes]:
    """Upstream SSE → client, event by event. Always ends with [DONE] or an error event."""
    pending = b""
    finished = False
    try:
        async for chunk in response.aiter_raw():
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r\n", b"\n")
            pending += chunk
            out: list[bytes] = []
            while (end := pending.find(b"\n\n")) != -1:
                event, pending = pending[:end], pending[end + 2 :]
                if event.startswith(b"data: [DONE]") or event.startswith(b"data:[DONE]"):
                    finished = True
                    break
                if b'"usage":{' in event or b'"usage": {' in event:
                    usage, usage_only = _usage_of(event)
                    if usage is not None:
                        call.usage = usage
                        if usage_only and not wants_usage:
                            continue
                out.append(event + b"\n\n")
            if finished:
                out.append(_DONE)
            if out:
                if call.first_byte_at is None:
                    call.first_byte_at = time.perf_counter()
                yield b"".join(out)
            if finished:
                return
        # The upstream ended cleanly without [DONE] (some servers do): end the stream properly.
        finished = True
        yield _DONE
    except httpx.ReadTimeout:
        call.status_code, call.outcome = 504, UsageRecord.Outcome.TIMEOUT
        yield errors.sse_error(errors.UpstreamTimeout("The model server stopped sending data."))
    except httpx.HTTPError as exc:
        call.status_code, call.outcome = 502, UsageRecord.Outcome.UPSTREAM_ERROR
        if call.route is not None:
            fire_and_forget(
                provider_record_failure,
                provider_id=call.route.provider_id,
                error=f"stream cut: {type(exc).__name__}",
            )
        yield errors.sse_error(errors.UpstreamError("The model server closed the stream early."))
    except (asyncio.CancelledError, GeneratorExit):
        # The client went away: close the upstream request at once (finally), keep the usage row.
        call.outcome = UsageRecord.Outcome.CLIENT_DISCONNECTED
        raise
    finally:
        await response.aclose()
        call.record()


@require_GET
async def models_list(request: HttpRequest) -> HttpResponse:
    try:
        principal = await aprincipal_from_request(request)
    except errors.GatewayError as err:
        return errors.json_error(err)
    routes = await registry.models_for(principal.organization_id, principal.project_id)
    return _json({"object": "list", "data": [_model_object(route) for route in routes]})


@require_GET
async def model_retrieve(request: HttpRequest, model: str) -> HttpResponse:
    try:
        principal = await aprincipal_from_request(request)
    except errors.GatewayError as err:
        return errors.json_error(err)
    for route in await registry.models_for(principal.organization_id, principal.project_id):
        if route.model_id == model:
            return _json(_model_object(route))
    return errors.json_error(
        errors.NotFound(
            f"The model '{model}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    )


def _model_object(route: Route) -> dict[str, Any]:
    return {"id": route.model_id, "object": "model", "created": route.created, "owned_by": route.owned_by}
