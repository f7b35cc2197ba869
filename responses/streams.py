"""The Responses API routes: plain async Django views (DRF views are synchronous and cannot stream).

One view serves `stream: true` and `false`. Events are numbered here, at the edge, so every
stream starts at 0 and goes up by exactly one whatever produced the events. A synchronous
response is stored before its terminal event is sent, so `retrieve()` right after a finished
stream returns the same object.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from accounts.auth import Principal, aprincipal_from_request
from gateway import errors
from gateway.api import query_flag
from gateway.background import fire_and_forget, run_sync
from gateway.pagination import page_params
from gateway.parsers import json_value, request_body
from inference.registry import registry
from responses import events, selectors, services
from responses.engine import Run, generate
from responses.models import Response
from responses.references import resolve_item_references
from responses.validation import parse_create

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]
_POLL_SECONDS = 0.5


def _api(*methods: str) -> Callable[[View], View]:
    """Method check and the error envelope for every route of this module."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                refusal = errors.json_error(
                    errors.MethodNotAllowed(f"Method {request.method} is not allowed on {request.path}.")
                )
                # RFC 9110 requires a 405 to name the methods the route does accept.
                refusal["Allow"] = ", ".join(methods)
                return refusal
            try:
                return await view(request, *args, **kwargs)
            except errors.GatewayError as err:
                return errors.json_error(err)

        return csrf_exempt(wrapper)

    return decorate


def _json(payload: dict[str, Any], status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")


def _sse(stream: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _check_model(principal: Principal, model: str) -> None:
    _, known = await registry.routes_for(model, principal.organization_id, principal.project_id)
    if not known:
        raise errors.NotFound(
            f"The model '{model}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )


async def _live(run: Run) -> AsyncIterator[bytes]:
    """A synchronous streaming run, straight to the client."""
    sequencer = events.Sequencer()
    run_events = generate(run)
    finished = False
    try:
        async for event in run_events:
            if event["type"] in events.TERMINAL_EVENTS:
                await run_sync(services.response_finish, row=run.row)
                finished = True
            yield events.sse(sequencer.stamp(event))
    finally:
        if not finished:
            # The client went away mid-run: close the upstream now, keep what was produced.
            await run_events.aclose()
            fire_and_forget(services.response_abandon, row=run.row)


async def _follow(row: Response, after: int) -> AsyncIterator[bytes]:
    """A background response's events after `after`: from the Redis log while it lives, else
    rebuilt from the stored object as it changes (embedded mode, or an expired log)."""

    async def finished() -> bool:
        status = await run_sync(_status, row.pk)
        return status is None or status not in (Response.Status.QUEUED, Response.Status.IN_PROGRESS)

    if await events.log_exists(row.public_id):
        async for event in events.log_follow(row.public_id, after, finished):
            yield events.sse(event)
        return
    sent = after
    while True:
        current = await run_sync(_reload, row.pk)
        if current is None:
            return
        for event in events.synthesize(selectors.response_object(current), queued=True):
            if event["sequence_number"] > sent:
                sent = event["sequence_number"]
                yield events.sse(event)
        if current.is_terminal:
            return
        await asyncio.sleep(_POLL_SECONDS)


def _status(pk: int) -> str | None:
    return Response.objects.using("default").filter(pk=pk).values_list("status", flat=True).first()


def _reload(pk: int) -> Response | None:
    return Response.objects.using("default").filter(pk=pk).first()


@_api("POST")
async def response_create(request: HttpRequest) -> HttpResponseBase:
    principal = await aprincipal_from_request(request)
    create = parse_create(json_value(request_body(request, limit=settings.CHAT_MAX_BODY_BYTES)))
    await _check_model(principal, create.model)
    create = await run_sync(resolve_item_references, principal, create)
    row, items = await run_sync(services.response_create, principal=principal, request=create)
    if create.background:
        return _sse(_follow(row, -1)) if create.stream else _json(selectors.response_object(row))
    run = Run(row=row, request=create, principal=principal, context_items=items)
    if create.stream:
        return _sse(_live(run))
    run.raise_rate_limit = True
    try:
        async for event in generate(run):
            if event["type"] in events.TERMINAL_EVENTS:
                await run_sync(services.response_finish, row=row)
    except errors.RateLimited:
        await run_sync(services.response_discard, row=row)  # nothing was generated: nothing kept
        raise
    except asyncio.CancelledError:
        # The client went away before the answer: the upstream is closed, the row must not
        # stay in_progress forever.
        fire_and_forget(services.response_abandon, row=row)
        raise
    return _json(selectors.response_object(row))


def _starting_after(request: HttpRequest) -> int:
    raw = request.GET.get("starting_after")
    if raw in (None, ""):
        return -1
    try:
        value = int(str(raw))
    except ValueError:
        raise errors.InvalidRequest("starting_after must be an integer.", param="starting_after") from None
    if value < 0:
        raise errors.InvalidRequest("starting_after must be 0 or more.", param="starting_after")
    return value


@_api("GET", "DELETE")
async def response_detail(request: HttpRequest, response_id: str) -> HttpResponseBase:
    principal = await aprincipal_from_request(request)
    if request.method == "DELETE":
        await run_sync(services.response_delete, principal=principal, response_id=response_id)
        return _json({"id": response_id, "object": "response", "deleted": True})
    query_flag(request.GET, "include_obfuscation")  # accepted (the gateway never obfuscates)
    if query_flag(request.GET, "stream"):
        after = _starting_after(request)
        row = await run_sync(services.response_get_for_stream, principal=principal, response_id=response_id)
        return _sse(_follow(row, after))
    row = await run_sync(selectors.response_get, principal, response_id)
    return _json(selectors.response_object(row))


@_api("POST")
async def response_cancel(request: HttpRequest, response_id: str) -> HttpResponseBase:
    principal = await aprincipal_from_request(request)
    row = await run_sync(services.response_cancel, principal=principal, response_id=response_id)
    return _json(selectors.response_object(row))


def _input_items(principal: Principal, response_id: str, query: Any) -> dict[str, Any]:
    row = selectors.response_get(principal, response_id)
    return selectors.input_items_page(row, page_params(query, default_order="desc"))


@_api("GET")
async def response_input_items(request: HttpRequest, response_id: str) -> HttpResponseBase:
    principal = await aprincipal_from_request(request)
    return _json(await run_sync(_input_items, principal, response_id, request.GET))
