"""Writes and runs of responses: create, finish, cancel, delete, and the background run.

The same generation code (responses.engine.generate) serves the request path and the Celery
worker; what differs is only where the events go (the client, the Redis log, nowhere).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.auth import Principal
from gateway import context
from gateway.background import run_sync
from gateway.errors import GatewayError, InvalidRequest
from responses import events, selectors, translate
from responses.engine import Run, generate
from responses.models import Response
from responses.validation import CreateRequest

logger = logging.getLogger(__name__)
T = TypeVar("T")

_ACTIVE = (Response.Status.QUEUED, Response.Status.IN_PROGRESS)
# A finished answer goes into its conversation; a failed or cancelled one does not.
_APPENDED = (Response.Status.COMPLETED, Response.Status.INCOMPLETE)
# What a conversation stores (web_search_call items are this response's own business).
_CONVERSATION_ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning")


def _principal_dict(principal: Principal) -> dict[str, Any]:
    """The caller as JSON, its rate limits included: a background run is limited like the request."""
    values = {f.name: getattr(principal, f.name) for f in dataclasses.fields(principal)}
    values["rate_limits"] = [list(rule) for rule in principal.rate_limits]
    return values


def _principal_of(row: Response) -> Principal:
    values = dict(row.principal)
    values["rate_limits"] = tuple(tuple(rule) for rule in values.get("rate_limits") or ())
    return Principal(**values)


def _params(request: CreateRequest) -> dict[str, Any]:
    params = dataclasses.asdict(request)
    params.pop("input")
    return params


def _conversation_items(principal: Principal, conversation_id: str) -> list[dict[str, Any]]:
    from conversations import selectors as conversation_selectors

    conversation = conversation_selectors.conversation_get(principal, conversation_id)
    return [
        conversation_selectors.item_object(item)
        for item in conversation_selectors.item_list(conversation, order="asc")
    ]


def response_create(*, principal: Principal, request: CreateRequest) -> tuple[Response, list[dict[str, Any]]]:
    """Build (and, with store=true, save) a response; returns it with the items the model sees.

    A background response is saved `queued` and handed to a worker after the commit; its
    opening stream events are logged first, so the worker's events always follow them.
    """
    previous = None
    history: list[dict[str, Any]] = []
    if request.previous_response_id:
        previous = selectors.response_get(
            principal, request.previous_response_id, param="previous_response_id"
        )
        if not previous.is_terminal:
            raise InvalidRequest(
                f"Previous response '{previous.public_id}' is still {previous.status}.",
                param="previous_response_id",
                code="previous_response_in_progress",
            )
        history = selectors.response_history(previous)
    elif request.conversation_id:
        history = _conversation_items(principal, request.conversation_id)
    assert principal.project_id is not None  # noqa: S101 -- data routes always select a project
    row = Response(
        organization_id=principal.organization_id,
        project_id=principal.project_id,
        user_id=principal.user_id,
        previous_response=previous,
        previous_response_public_id=previous.public_id if previous else "",
        conversation_public_id=request.conversation_id or "",
        model=request.model,
        status=Response.Status.QUEUED if request.background else Response.Status.IN_PROGRESS,
        background=request.background,
        stream=request.stream,
        instructions=request.instructions or "",
        params=_params(request),
        input_items=[translate.normalise_item(item) for item in request.input],
        metadata=request.metadata,
        principal=_principal_dict(principal),
        request_id=context.request_id() or "",
    )
    if request.store:
        with transaction.atomic():
            row.save()
            if request.background:
                transaction.on_commit(lambda: _enqueue(row))
    return row, history + row.input_items


def _enqueue(row: Response) -> None:
    from responses import tasks

    if row.stream:
        events.log_append_sync(row.public_id, events.synthesize(selectors.response_object(row), queued=True))
    tasks.response_generate.delay(row.pk)


def _conversation_append(row: Response) -> None:
    """Append this response's input and output items to its conversation, in order."""
    from conversations import selectors as conversation_selectors
    from conversations import services as conversation_services

    items = [i for i in row.input_items + row.output if i["type"] in _CONVERSATION_ITEM_TYPES]
    try:
        conversation = conversation_selectors.conversation_get(_principal_of(row), row.conversation_public_id)
        conversation_services.items_create(conversation=conversation, items=items, response_id=row.public_id)
    except GatewayError as err:
        # The response itself is done and stored; a conversation deleted meanwhile (or an item
        # it refuses) must not turn it into a failure.
        logger.warning(
            "response items not added to the conversation",
            extra={"response_id": row.public_id, "error": err.message},
        )


def response_finish(*, row: Response) -> Response:
    """Store the run's outcome. A response cancelled meanwhile stays cancelled (its output is kept)."""
    if row.pk is None:
        return row  # store=false: nothing is kept
    fields = {
        "output": row.output,
        "usage": row.usage,
        "error": row.error,
        "incomplete_details": row.incomplete_details,
        "completed_at": row.completed_at,
    }
    # One transaction: a client that sees the final status must also see the conversation's new items.
    with transaction.atomic():
        # attempts: a run the sweep gave up and re-queued is finished by its new claim only.
        updated = Response.objects.filter(pk=row.pk, status__in=_ACTIVE, attempts=row.attempts).update(
            status=row.status, **fields
        )
        if updated and row.conversation_public_id and row.status in _APPENDED:
            _conversation_append(row)
    if not updated:
        Response.objects.filter(pk=row.pk, attempts=row.attempts).update(output=row.output, usage=row.usage)
        row.status = Response.objects.filter(pk=row.pk).values_list("status", flat=True).first() or row.status
    return row


def response_abandon(*, row: Response) -> None:
    """The client of a synchronous stream went away mid-run: the response ends cancelled."""
    row.status = Response.Status.CANCELLED
    if row.pk is None:
        return
    Response.objects.filter(pk=row.pk, status__in=_ACTIVE).update(
        status=Response.Status.CANCELLED, cancelled_at=timezone.now(), output=row.output, usage=row.usage
    )


def response_discard(*, row: Response) -> None:
    """Forget a response that never reached the model (refused by our own rate limit)."""
    if row.pk is not None:
        Response.objects.filter(pk=row.pk).delete()


def response_cancel(*, principal: Principal, response_id: str) -> Response:
    """Cancel a background response. Idempotent: a finished one comes back unchanged.

    The row turns `cancelled` at once (conditional UPDATE, so a run finishing at the same moment
    wins or loses cleanly); the worker running it sees the Redis flag within
    RESPONSES_CANCEL_POLL_SECONDS, closes the upstream and stores the partial output.
    """
    row = selectors.response_get(principal, response_id)
    if not row.background:
        raise InvalidRequest(
            "Only background responses can be cancelled.",
            param="response_id",
            code="response_not_cancellable",
        )
    if row.is_terminal:
        return row
    Response.objects.filter(pk=row.pk, status__in=_ACTIVE).update(
        status=Response.Status.CANCELLED, cancelled_at=timezone.now()
    )
    events.cancel_signal_sync(row.public_id)
    row.refresh_from_db()
    return row


def response_delete(*, principal: Principal, response_id: str) -> str:
    row = selectors.response_get(principal, response_id)
    if not row.is_terminal and row.background:
        # A worker is still filling it: stop it, or it would write into a deleted row's void.
        events.cancel_signal_sync(row.public_id)
    row.delete()
    return response_id


# --- Background runs --------------------------------------------------------------------------


def _lease_until() -> datetime:
    return timezone.now() + timedelta(seconds=settings.RESPONSES_LEASE_SECONDS)


def _claim(response_pk: int) -> Response | None:
    claimed = Response.objects.filter(pk=response_pk, status=Response.Status.QUEUED).update(
        status=Response.Status.IN_PROGRESS,
        started_at=timezone.now(),
        lease_expires_at=_lease_until(),
        attempts=F("attempts") + 1,
    )
    if claimed != 1:
        return None
    return Response.objects.get(pk=response_pk)


def response_lease_renew(*, row: Response) -> bool:
    """Push the run's lease forward; False once the run is no longer this claim's to finish
    (cancelled, deleted, or given up by the sweep and claimed again)."""
    renewed = Response.objects.filter(
        pk=row.pk, status=Response.Status.IN_PROGRESS, attempts=row.attempts
    ).update(lease_expires_at=_lease_until())
    return renewed == 1


async def _keep_lease(row: Response) -> None:
    """Renew the lease every few seconds; returns when it is lost.

    A failed renewal (the database unreachable a moment) is retried at the next beat: the lease
    outlives a few of them, and if it does lapse the next successful renewal reports it lost.
    """
    while True:
        await asyncio.sleep(settings.RESPONSES_LEASE_RENEW_SECONDS)
        try:
            if not await run_sync(response_lease_renew, row=row):
                return
        except Exception:
            logger.warning("lease renewal failed", extra={"response_id": row.public_id}, exc_info=True)


def _run_context(row: Response) -> Run:
    params = {k: v for k, v in row.params.items() if k in {f.name for f in dataclasses.fields(CreateRequest)}}
    request = CreateRequest(input=[], **params)
    principal = _principal_of(row)
    history: list[dict[str, Any]] = []
    if row.previous_response_id:
        previous = Response.objects.filter(pk=row.previous_response_id).first()
        history = selectors.response_history(previous) if previous else []
    elif row.conversation_public_id:
        history = _conversation_items(principal, row.conversation_public_id)
    return Run(row=row, request=request, principal=principal, context_items=history + row.input_items)


def _is_cancelled(response_pk: int) -> bool:
    status = Response.objects.filter(pk=response_pk).values_list("status", flat=True).first()
    return status in (None, Response.Status.CANCELLED)


async def run_background(row: Response) -> None:
    """Generate a claimed background response, watching for a cancel all along."""
    from inference.usage import usage_buffer
    from organizations import ratelimits

    run = await run_sync(_run_context, row)
    # created + queued were logged at creation; a restarted run goes on after what is logged.
    sequencer = events.Sequencer(
        start=2 if row.attempts <= 1 else max(2, await _logged_events(row.public_id))
    )

    async def consume() -> None:
        async for event in generate(run, opening=False):
            if event["type"] in events.TERMINAL_EVENTS:
                await run_sync(response_finish, row=row)
            if row.stream:
                await events.log_append(row.public_id, [sequencer.stamp(event)])

    async def cancelled() -> bool:
        return await run_sync(_is_cancelled, row.pk)

    worker = asyncio.create_task(consume())
    watcher = asyncio.create_task(events.wait_for_cancel(row.public_id, cancelled))
    lease = asyncio.create_task(_keep_lease(row))
    try:
        done, _ = await asyncio.wait({worker, watcher, lease}, return_when=asyncio.FIRST_COMPLETED)
        if lease in done and worker not in done:
            # The sweep gave this run up (we were stalled past the lease): whoever holds it now
            # finishes it; this claim stops without writing.
            logger.warning("background response lease lost", extra={"response_id": row.public_id})
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        elif watcher in done:
            worker.cancel()  # the engine closes the upstream on its way out
            await asyncio.gather(worker, return_exceptions=True)
            await run_sync(response_finish, row=row)
            await events.log_end(row.public_id)
        else:
            watcher.cancel()
            try:
                worker.result()
            except Exception:
                logger.exception("background response crashed", extra={"response_id": row.public_id})
                row.status, row.error = (
                    Response.Status.FAILED,
                    {"code": "server_error", "message": "Internal error."},
                )
                await run_sync(response_finish, row=row)
                await events.log_end(row.public_id)
    finally:
        for task in (worker, watcher, lease):
            task.cancel()
        await usage_buffer.flush()
        await ratelimits.drain()  # token limits count this run's usage now, not at the next run


_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """One event loop per worker process, kept between tasks: the upstream session, the model
    registry and the Redis client are bound to a loop and are worth keeping warm."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
        loop = _loop
    return loop.run_until_complete(coroutine)


def response_run_background(*, response_pk: int) -> None:
    """Run a queued background response (the Celery task's body).

    Safe to run twice: the conditional UPDATE queued → in_progress claims it once; a response
    cancelled or deleted before any worker got to it is skipped.
    """
    row = _claim(response_pk)
    if row is None:
        logger.info("background response not claimable", extra={"response_pk": response_pk})
        return
    token = context.begin(request_id=row.request_id or None)
    try:
        _run_coroutine(run_background(row))
    except BaseException:
        # Celery's soft time limit (or a worker shutdown) interrupted the loop mid-run: its
        # tasks would resume inside the next task's run, so they are cancelled with the loop.
        _reset_loop()
        Response.objects.filter(pk=row.pk, status=Response.Status.IN_PROGRESS, attempts=row.attempts).update(
            status=Response.Status.FAILED,
            error={"code": "server_error", "message": "The worker stopped while generating the response."},
        )
        raise
    finally:
        context.end(token)


def _reset_loop() -> None:
    global _loop
    with _loop_lock:
        loop, _loop = _loop, None
    if loop is None or loop.is_closed():
        return
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    try:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    finally:
        loop.close()


_OPENING_EVENTS = 3  # response.created, response.queued, response.in_progress
_WORKER_STOPPED = {"code": "server_error", "message": "The worker running this response stopped."}


async def _logged_events(response_id: str) -> int:
    from gateway.redis import async_client

    redis = async_client()
    return int(await redis.xlen(events.events_key(response_id))) if redis is not None else 0


def _logged_events_sync(response_id: str) -> int:
    from gateway.redis import sync_client

    redis = sync_client()
    return int(redis.xlen(events.events_key(response_id))) if redis is not None else 0


def _restartable(row: Response) -> bool:
    """A run may start over if it has attempts left and no client has seen any of its output:
    a stored response shows output only once finished, a stream from its first delta on."""
    if row.lease_expires_at is None or row.attempts >= settings.RESPONSES_MAX_ATTEMPTS:
        return False  # no lease: claimed before leases existed, and stranded for many minutes
    return not row.stream or _logged_events_sync(row.public_id) <= _OPENING_EVENTS


def responses_sweep() -> tuple[int, int]:
    """Settle background runs whose worker died; returns (re-queued, failed).

    A worker renews its run's lease every few seconds, so a lapsed lease means the worker is
    gone. The run is re-queued once when starting over shows a client nothing twice, else it
    is failed, with a `response.failed` event for whoever follows its stream. Rows claimed
    before leases existed fall back to the old rule: older than the task's hard time limit.
    Every UPDATE is conditional on the claim (attempts), so concurrent sweeps settle a run once.
    """
    now = timezone.now()
    legacy_cutoff = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    lapsed = Response.objects.filter(background=True, status=Response.Status.IN_PROGRESS).filter(
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True, started_at__lt=legacy_cutoff)
    )
    requeued = failed = 0
    for row in lapsed:
        claim = Response.objects.filter(pk=row.pk, status=Response.Status.IN_PROGRESS, attempts=row.attempts)
        if _restartable(row):
            if claim.update(status=Response.Status.QUEUED, lease_expires_at=None, output=[], usage=None):
                requeued += 1
                logger.warning("background response re-queued", extra={"response_id": row.public_id})
                _requeue(row.pk)
            continue
        if claim.update(status=Response.Status.FAILED, error=_WORKER_STOPPED, lease_expires_at=None):
            failed += 1
            logger.warning("background response failed", extra={"response_id": row.public_id})
            row.refresh_from_db()
            _log_failure(row)
    return requeued, failed


def _requeue(response_pk: int) -> None:
    from responses import tasks

    tasks.response_generate.delay(response_pk)


def _log_failure(row: Response) -> None:
    """Tell a client following the stream how it ended: the terminal event, then the end mark."""
    if row.stream:
        logged = _logged_events_sync(row.public_id)
        if logged:
            failure = {"type": "response.failed", "response": selectors.response_object(row)}
            events.log_append_sync(row.public_id, [events.Sequencer(start=logged).stamp(failure)])
    events.log_end_sync(row.public_id)


def response_get_for_stream(*, principal: Principal, response_id: str) -> Response:
    row = selectors.response_get(principal, response_id)
    if not row.background:
        raise InvalidRequest(
            "Only background responses can be streamed again.", param="stream", code="response_not_streamable"
        )
    return row
