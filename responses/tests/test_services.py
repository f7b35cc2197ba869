"""Services and the task called directly: claim-once, cancel before a worker starts, enqueue on commit."""

from __future__ import annotations

from unittest import mock

import pytest

from accounts.auth import Principal, principal_from_headers
from inference.models import Provider
from inference.tests.fake_upstream import FakeUpstream
from organizations.tests.factories import make_api_key
from responses import selectors, services, tasks
from responses.events import synthesize
from responses.models import Response
from responses.validation import parse_create

pytestmark = pytest.mark.django_db(transaction=True)


def _principal(key: str) -> Principal:
    return principal_from_headers({"Authorization": f"Bearer {key}"})


def _chat_calls(upstream: FakeUpstream) -> int:
    return sum(1 for r in upstream.requests if r["path"] == "/v1/chat/completions")


def _queued(principal: Principal, **extra: object) -> Response:
    request = parse_create({"model": "fake-model", "input": "Hi", "background": True, **extra})
    with mock.patch.object(tasks.response_generate, "delay") as delay:
        row, items = services.response_create(principal=principal, request=request)
    delay.assert_called_once_with(row.pk)  # enqueued after the commit
    assert items == row.input_items
    return row


def test_the_task_claims_once(provider: Provider, upstream: FakeUpstream, project_key) -> None:
    row = _queued(_principal(project_key[1]))
    assert row.status == Response.Status.QUEUED
    tasks.response_generate(row.pk)
    tasks.response_generate(row.pk)  # a redelivery finds it no longer queued
    row.refresh_from_db()
    assert row.status == Response.Status.COMPLETED
    assert row.output[0]["content"][0]["text"] == "Hello from the fake model."
    assert _chat_calls(upstream) == 1


def test_cancel_before_any_worker_claims_it(provider: Provider, upstream: FakeUpstream, project_key) -> None:
    principal = _principal(project_key[1])
    row = _queued(principal)
    cancelled = services.response_cancel(principal=principal, response_id=row.public_id)
    assert cancelled.status == Response.Status.CANCELLED
    assert cancelled.cancelled_at is not None
    tasks.response_generate(row.pk)
    row.refresh_from_db()
    assert row.status == Response.Status.CANCELLED
    assert _chat_calls(upstream) == 0


def test_finish_keeps_a_cancel_that_won_the_race(provider: Provider, project_key) -> None:
    principal = _principal(project_key[1])
    row = _queued(principal)
    Response.objects.filter(pk=row.pk).update(status=Response.Status.IN_PROGRESS)
    services.response_cancel(principal=principal, response_id=row.public_id)
    row.status = Response.Status.COMPLETED  # what the worker computed meanwhile
    row.output = [
        {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed", "content": []}
    ]
    services.response_finish(row=row)
    assert row.status == Response.Status.CANCELLED
    stored = Response.objects.get(pk=row.pk)
    assert stored.status == Response.Status.CANCELLED
    assert stored.output == row.output  # the partial output is kept


def test_store_false_writes_nothing(provider: Provider, project_key) -> None:
    request = parse_create({"model": "fake-model", "input": "Hi", "store": False})
    row, _ = services.response_create(principal=_principal(project_key[1]), request=request)
    assert row.pk is None
    services.response_finish(row=row)
    assert not Response.objects.exists()


def test_synthesized_events_of_a_stored_response(
    provider: Provider, upstream: FakeUpstream, project_key
) -> None:
    row = _queued(_principal(project_key[1]), stream=True)
    obj = selectors.response_object(row)
    opening = synthesize(obj, queued=True)
    assert [e["type"] for e in opening] == ["response.created", "response.queued"]
    tasks.response_generate(row.pk)
    row.refresh_from_db()
    full = synthesize(selectors.response_object(row), queued=True)
    assert [e["sequence_number"] for e in full] == list(range(len(full)))
    assert [e["type"] for e in full[:3]] == ["response.created", "response.queued", "response.in_progress"]
    assert full[0]["response"]["status"] == "queued"
    assert full[-1]["type"] == "response.completed"
    assert full[-1]["response"] == selectors.response_object(row)


def test_sweep_fails_runs_stranded_by_a_dead_worker(provider: Provider, project_key, settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    principal = _principal(project_key[1])
    stranded, running = _queued(principal), _queued(principal)
    long_ago = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120)
    Response.objects.filter(pk=stranded.pk).update(status=Response.Status.IN_PROGRESS, started_at=long_ago)
    Response.objects.filter(pk=running.pk).update(
        status=Response.Status.IN_PROGRESS, started_at=timezone.now()
    )
    assert services.responses_sweep() == (0, 1)  # claimed before leases: failed, as it always was
    assert services.responses_sweep() == (0, 0)
    stranded.refresh_from_db()
    running.refresh_from_db()
    assert stranded.status == Response.Status.FAILED
    assert stranded.error == {"code": "server_error", "message": "The worker running this response stopped."}
    assert running.status == Response.Status.IN_PROGRESS


def test_a_background_run_is_rate_limited_like_its_request(
    provider: Provider, upstream: FakeUpstream
) -> None:
    from organizations import services as organization_services
    from organizations.tests.factories import make_project

    project = make_project()
    organization_services.project_rate_limit_set(
        project=project, model="fake-model", actor=organization_services.SYSTEM, max_requests_per_1_minute=1
    )
    _, raw = make_api_key(project=project)
    principal = _principal(raw)
    assert principal.rate_limits
    first, second = _queued(principal), _queued(principal)
    tasks.response_generate(first.pk)
    tasks.response_generate(second.pk)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Response.Status.COMPLETED
    assert second.status == Response.Status.FAILED
    assert second.error is not None
    assert second.error["code"] == "rate_limit_exceeded"
    assert _chat_calls(upstream) == 1


def test_input_items_page_is_one_query(provider: Provider, project_key, django_assert_num_queries) -> None:
    from gateway.pagination import page_params

    principal = _principal(project_key[1])
    request = parse_create(
        {"model": "fake-model", "input": [{"role": "user", "content": str(n)} for n in range(30)]}
    )
    row, _ = services.response_create(principal=principal, request=request)
    with django_assert_num_queries(1):
        page = selectors.input_items_page(
            selectors.response_get(principal, row.public_id), page_params({"limit": "10"})
        )
    assert [item["content"][0]["text"] for item in page["data"]] == [str(n) for n in range(29, 19, -1)]
    assert page["has_more"] is True
    after = selectors.input_items_page(row, page_params({"after": page["last_id"], "limit": "100"}))
    assert [item["content"][0]["text"] for item in after["data"]] == [str(n) for n in range(19, -1, -1)]
    assert after["has_more"] is False


def test_an_interrupted_run_fails_and_drops_its_loop(provider: Provider, project_key) -> None:
    import asyncio

    from celery.exceptions import SoftTimeLimitExceeded

    leftover: list[asyncio.Task[None]] = []

    async def interrupted(row: Response) -> None:
        leftover.append(asyncio.get_running_loop().create_task(asyncio.sleep(3600)))
        raise SoftTimeLimitExceeded

    row = _queued(_principal(project_key[1]))
    with mock.patch.object(services, "run_background", interrupted), pytest.raises(SoftTimeLimitExceeded):
        tasks.response_generate(row.pk)
    row.refresh_from_db()
    assert row.status == Response.Status.FAILED
    assert row.error == {
        "code": "server_error",
        "message": "The worker stopped while generating the response.",
    }
    assert leftover[0].cancelled()  # nothing of it resumes inside the next task
    assert services._loop is None
