"""Chat completions through the registry: the one code path every chat caller goes through.

`/v1/chat/completions` (inference.hotpath), conversation-aware chat and the Responses API all
open the upstream here, and so do `/v1/completions` and `/v1/embeddings` (`open_call` with their
endpoint), so routing, failover, outlier detection, timeouts, model access, limits, budgets and
usage accounting are written once:

- `open_chat` routes the request and opens the upstream response (a failure before the first
  byte is retried once on another provider); it raises GatewayError before anything is sent.
- `read_completion` / `relay_sse` finish a call for the proxy: raw bytes out, usage recorded.
- `complete` / `open_stream` are for callers that need the parsed answer (they store it).

Per request, once warm: no database query and no thread hop. The client's JSON goes upstream
byte for byte, except that a stream always asks the upstream for usage
(`stream_options.include_usage`) so it can be recorded; the usage chunk is passed on only when
the client asked for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from django.conf import settings

from accounts.auth import Principal
from gateway import context, errors, metrics
from gateway.background import fire_and_forget
from gateway.parsers import json_object
from inference import chat_validation, costs, endpoints
from inference.models import UsageRecord
from inference.netguard import PrivateAddressRefused
from inference.registry import registry
from inference.selectors import Route
from inference.services import provider_ejection_record
from inference.upstream import session, upstream_url
from inference.usage import usage_buffer
from organizations import model_access, ratelimits

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
_MAX_ATTEMPTS = 2  # a failure before the first byte is retried once, on another provider
# Failures before the request left this process: no model server saw it.
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, PrivateAddressRefused)


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
    recorded: bool = False
    admission: ratelimits.Admission = ratelimits.UNLIMITED
    endpoint: str = endpoints.CHAT

    def record(self) -> None:
        """Append the usage row (once); the batch writer stores it off the request path."""
        if self.recorded:
            return
        self.recorded = True
        usage = self.usage or {}
        now = time.perf_counter()
        cost, currency = costs.call_cost(self.route.price if self.route else None, usage)
        usage_buffer.add(
            organization_id=self.principal.organization_id,
            project_id=self.principal.project_id,
            api_key_id=self.principal.api_key_id,
            user_id=self.principal.user_id,
            model=self.model[:300],
            endpoint=self.endpoint,
            provider_id=self.route.provider_id if self.route else None,
            stream=self.stream,
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            total_tokens=_count(usage.get("total_tokens")),
            cached_tokens=costs.cached_tokens(usage),
            cost=cost,
            currency=currency,
            latency_ms=round((now - self.started) * 1000, 2),
            time_to_first_token_ms=round((self.first_byte_at - self.started) * 1000, 2)
            if self.first_byte_at
            else None,
            status_code=self.status_code,
            outcome=self.outcome,
            request_id=context.request_id() or "",
        )
        prompt_tokens, completion_tokens = (
            _count(usage.get("prompt_tokens")),
            _count(usage.get("completion_tokens")),
        )
        if self.route is not None:
            time_to_first_token = (
                self.first_byte_at - self.started if self.stream and self.first_byte_at else None
            )
            metrics.upstream_observed(
                self.model,
                self.route.provider_public_id,
                now - self.started,
                time_to_first_token,
                self.outcome,
            )
        metrics.tokens_counted(
            self.model, self.principal.project_public_id or "", prompt_tokens, completion_tokens
        )
        # Token limits and budgets count what was really used; this also gives back a stream slot.
        self.admission.finish_soon(
            total_tokens=_count(usage.get("total_tokens")) or prompt_tokens + completion_tokens,
            cost_nanos=costs.budget_nanos(cost, currency),
        )

    def fail(self, err: errors.GatewayError, outcome: str) -> errors.GatewayError:
        """A call a model server saw and that failed: it has a usage row like any other."""
        self.status_code, self.outcome = err.status, outcome
        self.record()
        return err

    def refuse(self, err: errors.GatewayError) -> errors.GatewayError:
        """A call no model server saw (none available, none reachable): nothing was used, so no
        usage row; the attempts count in the upstream metrics and the answer in the HTTP ones."""
        self.recorded = True
        if self.route is not None:
            metrics.upstream_observed(
                self.model,
                self.route.provider_public_id,
                time.perf_counter() - self.started,
                None,
                UsageRecord.Outcome.UNAVAILABLE,
            )
        self.admission.finish_soon(total_tokens=0)
        return err


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def parse_chat_request(raw: bytes) -> dict[str, Any]:
    """The checks every upstream would make anyway, answered before an upstream is chosen."""
    body = json_object(raw)
    validate_chat_body(body)
    return body


def validate_chat_body(body: dict[str, Any]) -> None:
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
    chat_validation.check_chat_request(body)


def upstream_error(status: int, raw: bytes) -> errors.GatewayError:
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


def model_not_found(model: str) -> errors.NotFound:
    return errors.NotFound(
        f"The model '{model}' does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


async def _send(route: Route, payload: bytes, stream: bool, endpoint: str) -> aiohttp.ClientResponse:
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        "Accept-Encoding": "identity",
    }
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    if request_id := context.request_id():
        headers["X-Request-ID"] = request_id
    async with asyncio.timeout(settings.UPSTREAM_FIRST_BYTE_TIMEOUT):
        return await session(public_only=route.public_only).post(
            upstream_url(route.base_url, endpoints.UPSTREAM_PATH[endpoint]),
            data=payload,
            headers=headers,
            allow_redirects=False,
        )


def _provider_failed(route: Route, error: str) -> None:
    """A failure the provider caused, for outlier detection: enough in a row take it out of this
    worker's rotation (inference.registry), never its health, which only the health poll sets."""
    if registry.record_failure(route.provider_id):
        failures = settings.PROVIDER_EJECT_CONSECUTIVE_FAILURES
        logger.warning(
            "provider taken out of rotation",
            extra={"provider_id": route.provider_public_id, "failures": failures, "error": error[:200]},
        )
        fire_and_forget(
            provider_ejection_record,
            provider_id=route.provider_id,
            error=f"{failures} failures in a row, the last: {error}",
        )


async def _connect(call: Call, routes: list[Route], payload: bytes) -> aiohttp.ClientResponse:
    """Open the upstream response, failing over once on errors before the first byte."""
    last_error: errors.GatewayError = errors.ServiceUnavailable(
        f"No healthy model server is serving '{call.model}' right now.", code="model_unavailable"
    )
    outcome: str = UsageRecord.Outcome.UPSTREAM_ERROR
    reached = False  # did any model server get the request?
    for route in routes[:_MAX_ATTEMPTS]:
        call.route = route
        try:
            response = await _send(route, payload, call.stream, call.endpoint)
        except _NOT_SENT as exc:
            last_error = errors.UpstreamError("Could not reach the model server.")
            _provider_failed(route, f"{type(exc).__name__}: {exc}")
            continue
        except TimeoutError:  # sent, but no first byte in time
            reached = True
            last_error = errors.UpstreamTimeout("The model server did not answer in time.")
            outcome = UsageRecord.Outcome.TIMEOUT
            if not call.stream:
                # A non-stream answer comes whole when the generation ends, and a long one can
                # outlast the first-byte budget on a perfectly well server: this request failed,
                # not the provider, and running it again elsewhere would only double its cost.
                break
            _provider_failed(route, "no first byte before the upstream timeout")
            continue
        except aiohttp.ClientError as exc:  # sent, then the connection broke before an answer
            reached = True
            last_error = errors.UpstreamError("The model server closed the connection before answering.")
            outcome = UsageRecord.Outcome.UPSTREAM_ERROR
            _provider_failed(route, f"{type(exc).__name__}: {exc}")
            continue
        reached = True
        if response.status >= 500:
            raw = await _read_quietly(response)
            last_error = upstream_error(response.status, raw)
            outcome = UsageRecord.Outcome.UPSTREAM_ERROR
            _provider_failed(route, f"HTTP {response.status}")
            continue
        registry.record_success(route.provider_id)
        return response
    raise call.fail(last_error, outcome) if reached else call.refuse(last_error)


async def _read_quietly(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await response.read()
    except (aiohttp.ClientError, TimeoutError):
        return b""
    finally:
        response.release()


@dataclass
class Opened:
    """An upstream answer that has started: headers in, body still to read or relay."""

    call: Call
    response: aiohttp.ClientResponse
    wants_usage: bool

    @property
    def is_sse(self) -> bool:
        return self.response.content_type == "text/event-stream"


async def open_chat(principal: Principal, body: dict[str, Any], raw: bytes | None = None) -> Opened:
    """Route and open one chat completion. `raw`, when given, is forwarded as it is."""
    return await open_call(principal, body, raw, endpoint=endpoints.CHAT)


async def open_call(
    principal: Principal, body: dict[str, Any], raw: bytes | None = None, *, endpoint: str
) -> Opened:
    """Route and open one call of a model endpoint (chat, text completions, embeddings): the
    routing, failover, limits and usage accounting every endpoint shares."""
    model = body["model"]
    streams = endpoint != endpoints.EMBEDDINGS and bool(body.get("stream"))
    call = Call(principal=principal, model=model, stream=streams, endpoint=endpoint)
    routes, found = await registry.routes_serving(
        model, principal.organization_id, principal.project_id, endpoint
    )
    if found == "unknown":
        raise model_not_found(model)
    if principal.model_access and not model_access.model_allowed(principal.model_access, model):
        raise model_access.model_not_allowed(model)
    if found == "unsupported":
        raise endpoints.not_supported(model, endpoint)
    # After the model check, so a mistyped model costs no quota. Raises RateLimited (429).
    call.admission = await ratelimits.admit(principal, model=model, stream=call.stream)
    wants_usage = False
    payload = raw
    if call.stream:
        options = body.get("stream_options") or {}
        wants_usage = options.get("include_usage") is True
        if not wants_usage:
            body = {**body, "stream_options": {**options, "include_usage": True}}
            payload = None
    if payload is None:
        payload = orjson.dumps(body)
    try:
        response = await _connect(call, routes, payload)
    except asyncio.CancelledError:
        call.admission.finish_soon(total_tokens=0)  # the client left before the upstream answered
        raise
    if response.status >= 400:
        refused = upstream_error(response.status, await _read_quietly(response))
        raise call.fail(refused, UsageRecord.Outcome.CLIENT_ERROR)
    return Opened(call=call, response=response, wants_usage=wants_usage)


async def read_completion(opened: Opened) -> tuple[bytes, dict[str, Any]]:
    """A non-stream answer: its bytes as the upstream sent them (the proxy relays these) and
    the object they hold (callers that store it), usage recorded."""
    call, response = opened.call, opened.response
    try:
        raw = await response.read()
    except (aiohttp.ClientError, TimeoutError):
        raise call.fail(
            errors.UpstreamError("The model server closed the connection early."),
            UsageRecord.Outcome.UPSTREAM_ERROR,
        ) from None
    finally:
        response.release()
    call.first_byte_at = time.perf_counter()
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise call.fail(
            errors.UpstreamError("The model server sent an empty or malformed answer."),
            UsageRecord.Outcome.UPSTREAM_ERROR,
        )
    usage = parsed.get("usage")
    call.usage = usage if isinstance(usage, dict) else None
    call.record()
    return raw, parsed


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


def _stream_failed(call: Call, exc: BaseException) -> errors.GatewayError:
    if isinstance(exc, TimeoutError):
        call.status_code, call.outcome = 504, UsageRecord.Outcome.TIMEOUT
        return errors.UpstreamTimeout("The model server stopped sending data.")
    call.status_code, call.outcome = 502, UsageRecord.Outcome.UPSTREAM_ERROR
    if call.route is not None:
        _provider_failed(call.route, f"stream cut: {type(exc).__name__}")
    return errors.UpstreamError("The model server closed the stream early.")


async def _events(call: Call, response: aiohttp.ClientResponse) -> AsyncIterator[list[bytes]]:
    """Complete SSE events (without their blank line) in the batches they arrived in.

    Stops after `[DONE]` (not yielded) or when the upstream ends; raises what the read raised.
    """
    pending = b""
    async for chunk in response.content.iter_any():
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        pending += chunk
        batch: list[bytes] = []
        done = False
        while (end := pending.find(b"\n\n")) != -1:
            event, pending = pending[:end], pending[end + 2 :]
            if event.startswith((b"data: [DONE]", b"data:[DONE]")):
                done = True
                break
            batch.append(event)
        if batch:
            if call.first_byte_at is None:
                call.first_byte_at = time.perf_counter()
            yield batch
        if done:
            return


async def relay_sse(opened: Opened) -> AsyncIterator[bytes]:
    """Upstream SSE → client bytes, event by event. Always ends with [DONE] or an error event.

    Closing this generator early (the client went away) closes the upstream request at once.
    """
    call, response, wants_usage = opened.call, opened.response, opened.wants_usage
    metrics.stream_started()
    try:
        async for batch in _events(call, response):
            out: list[bytes] = []
            for event in batch:
                if b'"usage":{' in event or b'"usage": {' in event:
                    usage, usage_only = _usage_of(event)
                    if usage is not None:
                        call.usage = usage
                        if usage_only and not wants_usage:
                            continue
                out.append(event + b"\n\n")
            if out:
                yield b"".join(out)
        # [DONE], or an upstream that ended cleanly without it (some servers do).
        yield DONE
    except (aiohttp.ClientError, TimeoutError) as exc:
        yield errors.sse_error(_stream_failed(call, exc))
    except (asyncio.CancelledError, GeneratorExit):
        call.outcome = UsageRecord.Outcome.CLIENT_DISCONNECTED
        raise
    finally:
        if call.outcome == UsageRecord.Outcome.CLIENT_DISCONNECTED:
            response.close()  # drop the connection: the upstream stops generating at once
        else:
            response.release()
        call.record()
        metrics.stream_finished()


# --- For callers that store what the model said -------------------------------------------


async def complete(principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """One non-stream chat completion, parsed. Raises GatewayError (4xx/5xx), usage recorded."""
    validate_chat_body(body)
    opened = await open_chat(principal, {**body, "stream": False})
    _, parsed = await read_completion(opened)
    return parsed


class ChatStream:
    """The parsed chunks of one upstream stream, for callers that relay and store them.

    Iterating yields every chunk dict, the usage-only chunk included (`choices == []`), and
    raises GatewayError (UpstreamError / UpstreamTimeout) if the upstream fails mid-stream.
    `aclose()` (or leaving the iteration early) closes the upstream request and records usage
    with outcome `client_disconnected` unless the stream had finished.
    """

    def __init__(self, opened: Opened) -> None:
        self.opened = opened
        self.call = opened.call
        self.finished = False

    @property
    def usage(self) -> dict[str, Any] | None:
        return self.call.usage

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        call, response = self.call, self.opened.response
        metrics.stream_started()
        try:
            if not self.opened.is_sse:
                call.status_code, call.outcome = 502, UsageRecord.Outcome.UPSTREAM_ERROR
                raise errors.UpstreamError("The model server answered a stream request without streaming.")
            async for batch in _events(call, response):
                for event in batch:
                    data = event[event.find(b"{") :] if b"{" in event else b""
                    try:
                        chunk = orjson.loads(data) if data else None
                    except orjson.JSONDecodeError:
                        chunk = None
                    if not isinstance(chunk, dict):
                        continue  # comments, keep-alives, event: lines without JSON
                    if isinstance(chunk.get("error"), dict):
                        call.status_code, call.outcome = 502, UsageRecord.Outcome.UPSTREAM_ERROR
                        message = str(chunk["error"].get("message") or "The model server failed mid-stream.")
                        raise errors.UpstreamError(message)
                    if isinstance(chunk.get("usage"), dict):
                        call.usage = chunk["usage"]
                    yield chunk
            self.finished = True
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _stream_failed(call, exc) from None
        except (asyncio.CancelledError, GeneratorExit):
            call.outcome = UsageRecord.Outcome.CLIENT_DISCONNECTED
            raise
        finally:
            if not self.finished and call.outcome == UsageRecord.Outcome.SUCCESS:
                call.outcome = UsageRecord.Outcome.CLIENT_DISCONNECTED
            if self.finished:
                response.release()
            else:
                response.close()
            call.record()
            metrics.stream_finished()

    async def aclose(self) -> None:
        """Close the upstream request if the iteration did not finish it."""
        if not self.call.recorded:
            if not self.finished:
                self.call.outcome = UsageRecord.Outcome.CLIENT_DISCONNECTED
            self.opened.response.close()
            self.call.record()


async def open_stream(principal: Principal, body: dict[str, Any]) -> ChatStream:
    """Open a chat completion stream (usage always requested). Raises GatewayError before any byte."""
    validate_chat_body(body)
    options = body.get("stream_options") or {}
    opened = await open_chat(
        principal, {**body, "stream": True, "stream_options": {**options, "include_usage": True}}
    )
    return ChatStream(opened)
