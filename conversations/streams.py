"""Conversation-aware chat: `/v1/conv/chat/completions`, `/v1/conv/completions`, `/v1/conv/models`.

Async Django views (they stream). The model is called through inference.chat, the same code
path as `/v1/chat/completions` (routing, failover, timeouts, usage rows); database work goes
through gateway.background.run_sync.

Both chat routes answer a chat completion, or its stream, with a `metadata` object naming the
conversation and the items of the turn. A stream's first event is a chunk with an empty delta
that carries the metadata, so strict OpenAI clients parse it like any other chunk; then the
upstream's chunks follow. The turn is stored from the accumulated deltas, with the upstream's
usage, before `[DONE]`. A stream that fails midway stores the input and an `incomplete`
assistant item, then sends the error event; a client that goes away gets the same record,
written in the background since its request task is being cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from accounts.auth import Principal, aprincipal_from_request
from conversations import selectors, services
from conversations.turns import Reply, Turn
from gateway import errors
from gateway.background import fire_and_forget, run_sync
from gateway.parsers import json_object, request_body
from inference import chat, hotpath

logger = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _serve(
    request: HttpRequest, prepare: Callable[[Principal, dict[str, Any]], Turn]
) -> HttpResponseBase:
    try:
        principal = await aprincipal_from_request(request)
        body = json_object(request_body(request, limit=settings.CHAT_MAX_BODY_BYTES))
        turn = await run_sync(prepare, principal, body)
        chat.validate_chat_body(turn.body)
        if turn.body.get("stream"):
            stream = await chat.open_stream(principal, turn.body)
            response = StreamingHttpResponse(
                _relay(principal, turn, stream), content_type="text/event-stream"
            )
            for name, value in SSE_HEADERS.items():
                response[name] = value
            return response
        completion = await chat.complete(principal, turn.body)
        if turn.store:
            reply = Reply.from_completion(completion)
            await run_sync(_store, principal, turn, reply, failed=False)
        return HttpResponse(
            orjson.dumps({**completion, "metadata": turn.metadata()}), content_type="application/json"
        )
    except errors.GatewayError as err:
        return errors.json_error(err)


def _store(principal: Principal, turn: Turn, reply: Reply, *, failed: bool) -> None:
    assert turn.completion_item_id is not None  # noqa: S101 -- a stored turn always has one
    items = reply.items(
        message_id=turn.completion_item_id, store_reasoning=turn.store_reasoning, failed=failed
    )
    services.chat_turn_store(principal=principal, turn=turn, reply=items)


async def _relay(principal: Principal, turn: Turn, stream: chat.ChatStream) -> AsyncIterator[bytes]:
    """Metadata chunk, the upstream's chunks, then the stored turn and [DONE] (or the error)."""
    reply = Reply()
    announced = False
    stored = False
    failure: errors.GatewayError | None = None
    try:
        try:
            async for chunk in stream:
                if not announced:
                    announced = True
                    yield _event(turn.metadata_chunk(chunk))
                reply.feed(chunk)
                if chunk.get("choices") == [] and not turn.include_usage:
                    continue  # the usage chunk we asked for on our own account
                yield _event(chunk)
        except errors.GatewayError as err:
            failure = err
        if not announced:
            announced = True
            yield _event(turn.metadata_chunk(None))
        if turn.store:
            stored = True  # from here on the write happens (a thread is not cancelled)
            try:
                await run_sync(_store, principal, turn, reply, failed=failure is not None)
            except errors.GatewayError as err:
                failure = failure or err
            except Exception:
                logger.exception(
                    "could not store a conversation turn", extra={"conversation": turn.conversation_id}
                )
                failure = failure or errors.ServerError("The reply could not be saved to the conversation.")
        yield errors.sse_error(failure) if failure is not None else DONE
    except (asyncio.CancelledError, GeneratorExit):
        if turn.store and not stored:
            # The client went away: keep what it asked and what it saw, marked incomplete.
            _store_later(principal, turn, reply)
        raise
    finally:
        await stream.aclose()


def _store_later(principal: Principal, turn: Turn, reply: Reply) -> None:
    try:
        fire_and_forget(_store, principal=principal, turn=turn, reply=reply, failed=True)
    except RuntimeError:  # no running loop (the generator is being garbage-collected)
        logger.error("a cancelled turn could not be stored", extra={"conversation": turn.conversation_id})


@csrf_exempt
@require_POST
async def conv_chat_completions(request: HttpRequest) -> HttpResponseBase:
    """A chat completion request plus `conversation`, `store` and `store_reasoning`."""
    return await _serve(request, _prepare_chat)


@csrf_exempt
@require_POST
async def conv_completions(request: HttpRequest) -> HttpResponseBase:
    """Only the new turn (`input`) plus `conversation_id`; the history comes from the store."""
    return await _serve(request, selectors.turn_for_completion)


def _prepare_chat(principal: Principal, body: dict[str, Any]) -> Turn:
    chat.validate_chat_body(body)  # messages must be there before the last one is picked
    return selectors.turn_for_chat(principal, body)


@require_GET
async def conv_models(request: HttpRequest) -> HttpResponseBase:
    """`/v1/models`, answered by the same handler."""
    return (await hotpath.models_list(request.headers)).as_django()
