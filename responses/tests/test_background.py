"""Background responses run by two real Celery worker processes; cancel across processes; resume."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from gateway.redis import sync_client
from inference.models import Provider
from inference.tests.fake_upstream import FakeUpstream
from organizations.tests.factories import make_api_key
from responses.events import events_key
from responses.tests.helpers import get, headers, parse_sse, post, stream_events
from tests.live_server import LiveGateway
from tests.openai_spec import assert_valid

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_workers")]


def _wait(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting")


def _status(sdk: openai.OpenAI, response_id: str) -> str:
    return sdk.responses.retrieve(response_id).status or ""


def test_background_lifecycle(
    sdk: openai.OpenAI, live_gateway: LiveGateway, provider: Provider, project_key
) -> None:
    reply = post(
        live_gateway, project_key[1], "/responses", {"model": "fake-model", "input": "Hi", "background": True}
    )
    assert reply.status_code == 200
    queued = reply.json()
    assert_valid("Response", queued)
    assert queued["status"] == "queued"
    assert queued["background"] is True
    assert queued["output"] == []
    assert queued["usage"] is None
    _wait(lambda: _status(sdk, queued["id"]) == "completed")
    done = sdk.responses.retrieve(queued["id"])
    assert done.output_text == "Hello from the fake model."
    assert done.usage is not None
    assert done.usage.output_tokens == 6
    assert_valid("Response", get(live_gateway, project_key[1], f"/responses/{done.id}").json())
    again = sdk.responses.cancel(done.id)  # a finished response comes back unchanged
    assert again.status == "completed"
    assert again.output_text == done.output_text


def test_cancel_stops_the_run_on_whichever_worker_within_a_second(
    sdk: openai.OpenAI, live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key
) -> None:
    upstream.behaviour["fake-model"] = "slow_stream"
    upstream.delay = 0.02  # 200 chunks: about 4 s per run
    first = sdk.responses.create(model="fake-model", input="Long one", background=True)
    second = sdk.responses.create(model="fake-model", input="Long two", background=True)
    # Both in progress at once: with solo pools that means two worker processes run them.
    _wait(lambda: _status(sdk, first.id) == "in_progress" and _status(sdk, second.id) == "in_progress")
    assert upstream.wait_for(
        lambda: sum(1 for r in upstream.requests if r["path"] == "/v1/chat/completions") == 2
    )
    time.sleep(0.2)
    cancelled_at = time.monotonic()
    cancelled = sdk.responses.cancel(first.id)
    assert cancelled.status == "cancelled"
    assert upstream.wait_for(lambda: upstream.disconnects == 1, timeout=1.0)
    assert time.monotonic() - cancelled_at < 1.0
    # the partial output is kept, the status stays cancelled
    stored = _wait(lambda: (r := sdk.responses.retrieve(first.id)).output and r)
    assert stored.status == "cancelled"
    assert stored.output[0].status == "incomplete"
    assert stored.output_text.startswith("Hello from")
    # idempotent
    assert sdk.responses.cancel(first.id).status == "cancelled"
    # the other worker's run is untouched and finishes
    _wait(lambda: _status(sdk, second.id) == "completed", timeout=30)
    assert upstream.disconnects == 1


def test_cancel_is_isolated_per_project(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream, live_gateway: LiveGateway
) -> None:
    upstream.behaviour["fake-model"] = "slow_stream"
    upstream.delay = 0.01
    response = sdk.responses.create(model="fake-model", input="Hi", background=True)
    _, other_key = make_api_key()
    reply = post(live_gateway, other_key, f"/responses/{response.id}/cancel")
    assert reply.status_code == 404
    _wait(lambda: _status(sdk, response.id) == "completed", timeout=30)


def test_background_stream_resumes_without_gap_or_repeat(
    sdk: openai.OpenAI, live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key
) -> None:
    upstream.behaviour["fake-model"] = "slow_stream"
    upstream.delay = 0.01
    first_part: list[dict[str, Any]] = []
    with httpx.stream(
        "POST",
        f"{live_gateway.url}/v1/responses",
        json={"model": "fake-model", "input": "Hi", "background": True, "stream": True},
        headers=headers(project_key[1]),
        timeout=30,
    ) as response:
        lines: list[str] = []
        for line in response.iter_lines():
            if line:
                lines.append(line)
            if sum(1 for x in lines if x.startswith("data: ")) == 12:
                break
        first_part = parse_sse(lines)
    assert [e["type"] for e in first_part[:3]] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    assert first_part[0]["response"]["status"] == "queued"
    response_id = first_part[0]["response"]["id"]
    last = first_part[-1]["sequence_number"]
    rest = stream_events(
        live_gateway, project_key[1], path=f"/responses/{response_id}", stream="true", starting_after=last
    )
    events = first_part + rest
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    assert events[-1]["type"] == "response.completed"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == text
    assert len(text.split()) > 100
    assert get(live_gateway, project_key[1], f"/responses/{response_id}").json() == final
    # Replaying from the middle through the SDK (strict types) gives the same tail.
    replay = list(sdk.responses.retrieve(response_id, stream=True, starting_after=last + 5))
    assert [e.sequence_number for e in replay] == [e["sequence_number"] for e in events[last + 6 :]]
    # Resuming after the last event of a finished run ends at once, with nothing.
    started = time.monotonic()
    tail = stream_events(
        live_gateway,
        project_key[1],
        path=f"/responses/{response_id}",
        stream="true",
        starting_after=len(events) - 1,
    )
    assert tail == []
    assert time.monotonic() - started < 3
    # Once the log has expired, a finished response's events are rebuilt from the store.
    redis = sync_client()
    assert redis is not None
    redis.delete(events_key(response_id))
    rebuilt = stream_events(live_gateway, project_key[1], path=f"/responses/{response_id}", stream="true")
    assert [e["sequence_number"] for e in rebuilt] == list(range(len(rebuilt)))
    assert rebuilt[-1]["response"] == final


def test_resume_of_a_synchronous_response_is_400(
    sdk: openai.OpenAI, provider: Provider, live_gateway: LiveGateway, project_key
) -> None:
    response = sdk.responses.create(model="fake-model", input="Hi")
    reply = get(live_gateway, project_key[1], f"/responses/{response.id}", stream="true")
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "response_not_streamable"


def test_sdk_stream_helper_over_a_background_run(sdk: openai.OpenAI, provider: Provider) -> None:
    with sdk.responses.stream(model="fake-model", input="Hi", background=True) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert final.background is True
    assert final.output_text == "Hello from the fake model."
    assert sdk.responses.retrieve(final.id).output_text == final.output_text
    assert sdk.responses.retrieve(final.id).status == "completed"


def test_background_run_with_a_conversation(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    conversation = sdk.conversations.create(
        items=[{"type": "message", "role": "user", "content": "My name is Ann."}]
    )
    response = sdk.responses.create(
        model="fake-model", conversation=conversation.id, input="What is my name?", background=True
    )
    _wait(lambda: _status(sdk, response.id) == "completed")
    chat = [r for r in upstream.requests if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert [m["content"] for m in chat["messages"]] == ["My name is Ann.", "What is my name?"]
    items = list(sdk.conversations.items.list(conversation.id, order="asc"))
    assert [item.role for item in items] == ["user", "user", "assistant"]  # type: ignore[union-attr]


def test_deleting_a_running_response_stops_its_worker(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    upstream.behaviour["fake-model"] = "slow_stream"
    upstream.delay = 0.05
    response = sdk.responses.create(model="fake-model", input="Hi", background=True)
    _wait(lambda: _status(sdk, response.id) == "in_progress")
    assert upstream.wait_for(lambda: any(r["path"] == "/v1/chat/completions" for r in upstream.requests))
    sdk.responses.delete(response.id)
    assert upstream.wait_for(lambda: upstream.disconnects == 1, timeout=1.0)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)


def test_a_jwt_users_background_run(live_gateway: LiveGateway, provider: Provider) -> None:
    login = httpx.post(f"{live_gateway.url}/v1/auth/guest-login", timeout=10)
    assert login.status_code == 200, login.text
    client = openai.OpenAI(
        base_url=f"{live_gateway.url}/v1",
        api_key=login.json()["access_token"],
        max_retries=0,
        _strict_response_validation=True,
    )
    response = client.responses.create(model="fake-model", input="Hi", background=True)
    _wait(lambda: _status(client, response.id) == "completed")
    assert client.responses.retrieve(response.id).output_text == "Hello from the fake model."
