"""Streaming responses: the OpenAI event contract, raw and through the SDK's stream helper."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
from django.db import close_old_connections

from inference.models import Provider
from inference.tests.fake_upstream import FakeUpstream
from responses.models import Response
from responses.tests.helpers import get, headers, parse_sse, stream_events
from tests.live_server import LiveGateway
from tests.openai_spec import assert_valid

pytestmark = pytest.mark.django_db(transaction=True)


def _check_contract(events: list[dict[str, Any]], terminal: str = "response.completed") -> None:
    """Every event valid; numbered 0, 1, 2, ...; created first; one terminal event, last."""
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == terminal
    lifecycle = [e["response"]["id"] for e in events if "response" in e]
    assert len(set(lifecycle)) == 1
    terminals = [
        e for e in events if e["type"] in ("response.completed", "response.failed", "response.incomplete")
    ]
    assert len(terminals) == 1


def _plain(value: Any) -> Any:
    """A dumped SDK object without the stream helper's parse-only additions (`parsed`...)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in ("parsed", "output_parsed")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_text_event_sequence(live_gateway: LiveGateway, provider: Provider, project_key) -> None:
    events = stream_events(
        live_gateway, project_key[1], {"model": "fake-model", "input": "Hi", "stream": True}
    )
    _check_contract(events)
    types = [e["type"] for e in events]
    assert types[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["output"] == []
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == "Hello from the fake model."
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == deltas
    assert final["usage"]["output_tokens"] == 6
    stored = get(live_gateway, project_key[1], f"/responses/{final['id']}").json()
    assert stored == final


def test_sdk_stream_helper_final_response_equals_retrieve(sdk: openai.OpenAI, provider: Provider) -> None:
    with sdk.responses.stream(model="fake-model", input="Hi", instructions="Be kind.") as stream:
        texts = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == "Hello from the fake model."
    assert final.output_text == "Hello from the fake model."
    retrieved = sdk.responses.retrieve(final.id)
    assert _plain(retrieved.to_dict()) == _plain(final.to_dict())


def test_sdk_create_stream_is_typed(sdk: openai.OpenAI, provider: Provider) -> None:
    stream = sdk.responses.create(model="fake-model", input="Hi", stream=True)
    events = list(stream)
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_reasoning_events(
    live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key
) -> None:
    upstream.behaviour["fake-reasoner"] = "reasoning"
    events = stream_events(
        live_gateway, project_key[1], {"model": "fake-reasoner", "input": "Think", "stream": True}
    )
    _check_contract(events)
    types = [e["type"] for e in events]
    assert types[2:6] == [
        "response.output_item.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
    ]
    assert events[2]["item"]["type"] == "reasoning"
    done = next(e for e in events if e["type"] == "response.reasoning_text.done")
    assert done["text"] == "Let me think."
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["content"] == [{"type": "reasoning_text", "text": "Let me think."}]


def test_function_call_events(
    live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key
) -> None:
    upstream.behaviour["fake-model"] = "tool_calls"
    tools = [
        {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}},
        {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}},
    ]
    events = stream_events(
        live_gateway,
        project_key[1],
        {"model": "fake-model", "input": "Weather?", "tools": tools, "stream": True},
    )
    _check_contract(events)
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [e["item"]["type"] for e in added] == ["function_call", "function_call"]
    assert [e["item"]["call_id"] for e in added] == ["call_weather", "call_time"]
    arguments = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["name"], e["arguments"]) for e in arguments] == [
        ("get_weather", '{"city": "Paris"}'),
        ("get_time", '{"tz": "CET"}'),
    ]
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert "".join(deltas) == '{"city": "Paris"}{"tz": "CET"}'
    final = events[-1]["response"]
    assert [item["status"] for item in final["output"]] == ["completed", "completed"]


def test_incomplete_stream_ends_with_response_incomplete(
    live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key
) -> None:
    upstream.behaviour["fake-model"] = "length"
    events = stream_events(
        live_gateway,
        project_key[1],
        {"model": "fake-model", "input": "Hi", "stream": True, "max_output_tokens": 1},
    )
    _check_contract(events, terminal="response.incomplete")
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.parametrize("behaviour", ["cut_mid_stream", "error_500"])
def test_upstream_failure_emits_response_failed(
    live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key, behaviour: str
) -> None:
    upstream.behaviour["fake-model"] = behaviour
    events = stream_events(
        live_gateway, project_key[1], {"model": "fake-model", "input": "Hi", "stream": True}
    )
    _check_contract(events, terminal="response.failed")
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "server_error"
    stored = get(live_gateway, project_key[1], f"/responses/{failed['id']}").json()
    assert stored["status"] == "failed"
    assert stored == failed
    items = get(live_gateway, project_key[1], f"/responses/{failed['id']}/input_items").json()
    assert items["data"][0]["content"] == [{"type": "input_text", "text": "Hi"}]


def test_client_disconnect_closes_the_upstream(
    live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key
) -> None:
    upstream.behaviour["fake-model"] = "slow_stream"
    upstream.delay = 0.05
    with httpx.stream(
        "POST",
        f"{live_gateway.url}/v1/responses",
        json={"model": "fake-model", "input": "Hi", "stream": True},
        headers=headers(project_key[1]),
        timeout=10,
    ) as response:
        lines = []
        for line in response.iter_lines():
            if line:
                lines.append(line)
            if sum(1 for x in lines if x.startswith("data: ")) >= 6:
                break
    events = parse_sse(lines)
    response_id = events[0]["response"]["id"]
    assert upstream.wait_for(lambda: upstream.disconnects == 1, timeout=5)
    deadline = time.monotonic() + 5
    row = None
    while time.monotonic() < deadline:
        close_old_connections()
        row = Response.objects.get(public_id=response_id)
        if row.status == Response.Status.CANCELLED:
            break
        time.sleep(0.05)
    assert row is not None
    assert row.status == Response.Status.CANCELLED
    assert row.output[0]["status"] == "incomplete"
    assert row.output[0]["content"][0]["text"].startswith("Hello from")


class LogprobUpstream(FakeUpstream):
    """Adds chat logprobs to every content chunk when the request asks for them."""

    def _events(self, body: dict[str, Any], behaviour: str) -> list[dict[str, Any]]:
        events = super()._events(body, behaviour)
        if body.get("logprobs"):
            for event in events:
                for choice in event["choices"]:
                    token = choice["delta"].get("content")
                    if token:
                        entry = {"token": token, "logprob": -0.5, "bytes": list(token.encode())}
                        choice["logprobs"] = {"content": [{**entry, "top_logprobs": [entry]}]}
        return events


def test_logprobs_reach_the_output_text(live_gateway: LiveGateway, make_upstream: Any, project_key) -> None:
    from tests.fixtures import register

    upstream = LogprobUpstream(["fake-model"]).start()
    try:
        register(upstream)
        events = stream_events(
            live_gateway,
            project_key[1],
            {"model": "fake-model", "input": "Hi", "stream": True, "top_logprobs": 2},
        )
    finally:
        upstream.stop()
    _check_contract(events)
    chat = [r for r in upstream.requests if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert (chat["logprobs"], chat["top_logprobs"]) == (True, 2)
    first_delta = next(e for e in events if e["type"] == "response.output_text.delta" and e["delta"])
    assert first_delta["logprobs"] == [
        {
            "token": first_delta["delta"],
            "logprob": -0.5,
            "top_logprobs": [{"token": first_delta["delta"], "logprob": -0.5}],
        }
    ]
    part = events[-1]["response"]["output"][0]["content"][0]
    assert [lp["token"] for lp in part["logprobs"]] == ["Hello", " from", " the", " fake", " model", "."]
    assert part["logprobs"][0]["bytes"] == list(b"Hello")
    assert events[-1]["response"]["top_logprobs"] == 2


def test_non_stream_client_that_leaves_cancels_the_run(
    live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key
) -> None:
    upstream.behaviour["fake-model"] = "slow_stream"
    upstream.delay = 0.05
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{live_gateway.url}/v1/responses",
            json={"model": "fake-model", "input": "Hi"},
            headers=headers(project_key[1]),
            timeout=1.0,
        )
    assert upstream.wait_for(lambda: upstream.disconnects == 1, timeout=5)
    deadline = time.monotonic() + 5
    status = None
    while time.monotonic() < deadline:
        close_old_connections()
        status = Response.objects.values_list("status", flat=True).first()
        if status == Response.Status.CANCELLED:
            break
        time.sleep(0.05)
    assert status == Response.Status.CANCELLED
