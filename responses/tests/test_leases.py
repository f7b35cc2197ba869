"""Background runs hold a lease their worker renews; a run whose worker died is re-queued once
or failed by the sweep, and a client following its stream sees how it ended."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import httpx
import orjson
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.auth import Principal, principal_from_headers
from gateway.redis import sync_client
from inference.models import Provider
from inference.tests.fake_upstream import FakeUpstream
from responses import services, tasks
from responses.events import Sequencer, events_key, log_append_sync
from responses.models import Response
from responses.tests.helpers import headers, post, stream_events
from responses.validation import parse_create
from tests.live_server import CeleryWorkers, LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)


def _principal(key: str) -> Principal:
    return principal_from_headers({"Authorization": f"Bearer {key}"})


def _queued(principal: Principal, **extra: object) -> Response:
    request = parse_create({"model": "fake-model", "input": "Hi", "background": True, **extra})
    with mock.patch.object(tasks.response_generate, "delay"):
        row, _ = services.response_create(principal=principal, request=request)
    return row


def _lapse(row: Response) -> None:
    Response.objects.filter(pk=row.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def _sweep() -> tuple[tuple[int, int], list[int]]:
    with mock.patch.object(tasks.response_generate, "delay") as delay:
        outcome = services.responses_sweep()
    return outcome, [call.args[0] for call in delay.call_args_list]


def test_a_claim_takes_a_lease_that_renewal_pushes_forward(project_key: Any) -> None:
    row = _queued(_principal(project_key[1]))
    claimed = services._claim(row.pk)
    assert claimed is not None
    assert claimed.attempts == 1
    assert claimed.lease_expires_at is not None
    first = claimed.lease_expires_at
    assert first > timezone.now() + timedelta(seconds=settings.RESPONSES_LEASE_SECONDS - 5)
    _lapse(claimed)
    assert services.response_lease_renew(row=claimed)
    claimed.refresh_from_db()
    assert claimed.lease_expires_at is not None
    assert claimed.lease_expires_at > timezone.now()
    assert services.responses_sweep() == (0, 0)  # renewed in time: nothing to do


def test_a_lapsed_run_is_requeued_once_then_failed(project_key: Any) -> None:
    row = _queued(_principal(project_key[1]))
    first = services._claim(row.pk)
    assert first is not None
    _lapse(first)
    assert _sweep() == ((1, 0), [row.pk])
    row.refresh_from_db()
    assert row.status == Response.Status.QUEUED
    assert _sweep() == ((0, 0), [])  # queued, not in progress: nothing to sweep twice

    second = services._claim(row.pk)
    assert second is not None
    assert second.attempts == 2
    # The first claim's worker was only stalled: it may neither renew nor write any more.
    assert not services.response_lease_renew(row=first)
    first.status, first.output = Response.Status.COMPLETED, [{"type": "message", "stale": True}]
    services.response_finish(row=first)
    second.refresh_from_db()
    assert second.status == Response.Status.IN_PROGRESS
    assert second.output == []

    _lapse(second)
    assert _sweep() == ((0, 1), [])
    second.refresh_from_db()
    assert second.status == Response.Status.FAILED
    assert second.error == {"code": "server_error", "message": "The worker running this response stopped."}


def test_a_lapsed_stream_that_showed_output_is_failed_with_an_event_for_its_followers(
    project_key: Any,
) -> None:
    if sync_client() is None:
        pytest.skip("the stream event log lives in Redis")
    row = _queued(_principal(project_key[1]), stream=True)
    claimed = services._claim(row.pk)
    assert claimed is not None
    sequencer = Sequencer(start=2)
    log_append_sync(
        row.public_id,
        [
            sequencer.stamp({"type": "response.in_progress", "response": {}}),
            sequencer.stamp({"type": "response.output_text.delta", "delta": "Hel"}),
        ],
    )
    _lapse(claimed)
    assert _sweep() == ((0, 1), [])  # a client saw "Hel": starting over would show it twice
    redis = sync_client()
    assert redis is not None
    entries = redis.xrange(events_key(row.public_id))
    failed = orjson.loads(entries[-2][1][b"d"])
    assert failed["type"] == "response.failed"
    assert failed["sequence_number"] == 4
    assert failed["response"]["status"] == "failed"
    assert b"d" not in entries[-1][1]  # then the end mark


def test_a_requeued_stream_goes_on_numbering_its_events_where_the_dead_run_stopped(
    provider: Provider, project_key: Any
) -> None:
    if sync_client() is None:
        pytest.skip("the stream event log lives in Redis")
    row = _queued(_principal(project_key[1]), stream=True)
    first = services._claim(row.pk)
    assert first is not None
    # The first worker got as far as announcing the run, then died before any output.
    log_append_sync(
        row.public_id, [Sequencer(start=2).stamp({"type": "response.in_progress", "response": {}})]
    )
    _lapse(first)
    assert _sweep() == ((1, 0), [row.pk])
    tasks.response_generate(row.pk)  # the re-queued task, run here
    row.refresh_from_db()
    assert row.status == Response.Status.COMPLETED
    assert row.attempts == 2
    redis = sync_client()
    assert redis is not None
    logged = [
        orjson.loads(fields[b"d"]) for _, fields in redis.xrange(events_key(row.public_id)) if b"d" in fields
    ]
    assert [event["sequence_number"] for event in logged] == list(range(len(logged)))
    assert [event["type"] for event in logged[:4]] == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.in_progress",  # the second claim's start: no output was shown twice
    ]
    assert logged[-1]["type"] == "response.completed"


# --- With real worker processes ---------------------------------------------------------------


def _wait(predicate: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def _status(pk: int) -> str:
    return str(Response.objects.filter(pk=pk).values_list("status", flat=True).first())


@pytest.mark.slow
def test_runs_of_a_killed_worker_are_requeued_or_failed_within_30_s(
    live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key: Any
) -> None:
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip("worker processes share the test database and the broker only on PostgreSQL + Redis")
    upstream.behaviour["fake-model"] = "slow_stream"
    upstream.delay = 0.03  # 200 chunks: about 6 s per run
    workers = CeleryWorkers(2).start()
    try:
        plain = post(
            live_gateway,
            project_key[1],
            "/responses",
            {"model": "fake-model", "input": "A", "background": True},
        ).json()
        # A background stream: its POST follows the run; the first event names it, then we leave.
        with httpx.stream(
            "POST",
            f"{live_gateway.url}/v1/responses",
            json={"model": "fake-model", "input": "B", "background": True, "stream": True},
            headers=headers(project_key[1]),
            timeout=15,
        ) as opening:
            streamed_id = next(
                orjson.loads(line.removeprefix("data: "))["response"]["id"]
                for line in opening.iter_lines()
                if line.startswith("data: ")
            )
        rows = {
            name: Response.objects.get(public_id=public_id)
            for name, public_id in (("plain", plain["id"]), ("streamed", streamed_id))
        }
        assert _wait(lambda: all(_status(row.pk) == "in_progress" for row in rows.values()), 20)
        # The streamed run has shown output to its followers before its worker dies.
        redis = sync_client()
        assert redis is not None
        assert _wait(lambda: redis.xlen(events_key(streamed_id)) > 5, 10)
        followed: list[dict[str, Any]] = []
        follower = threading.Thread(
            target=lambda: followed.extend(
                stream_events(live_gateway, project_key[1], path=f"/responses/{streamed_id}", stream="true")
            ),
            daemon=True,
        )
        follower.start()
        for process in workers.processes:
            os.kill(process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
    finally:
        workers.stop()
    replacement = CeleryWorkers(1).start(flush=False)  # the stream's event log must survive
    try:

        def settled() -> bool:
            services.responses_sweep()  # what beat runs every RESPONSES_SWEEP_SECONDS
            return _status(rows["plain"].pk) != "in_progress" and _status(rows["streamed"].pk) == "failed"

        assert _wait(settled, 30)
        assert time.monotonic() - killed_at < 30
        assert _wait(lambda: _status(rows["plain"].pk) == "completed", 20), replacement.output()
    finally:
        replacement.stop()
    completed = Response.objects.get(pk=rows["plain"].pk)
    assert completed.attempts == 2
    assert completed.output[0]["content"][0]["text"]
    follower.join(timeout=20)
    assert followed, "the follower saw nothing"
    assert followed[-1]["type"] == "response.failed"
    assert followed[-1]["response"]["error"]["message"] == "The worker running this response stopped."
