"""previous_response_id chains and function tools with function_call_output follow-ups."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from inference.models import Provider
from inference.tests.fake_upstream import FakeUpstream
from responses.tests.helpers import get, post
from tests.live_server import LiveGateway
from tests.openai_spec import assert_valid

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = "Hello from the fake model."
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
    {
        "type": "function",
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
    },
]


def _messages(upstream: FakeUpstream) -> list[dict]:
    return [r for r in upstream.requests if r["path"] == "/v1/chat/completions"][-1]["body"]["messages"]


def test_previous_response_chain(sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream) -> None:
    first = sdk.responses.create(model="fake-model", input="My name is Ann.", instructions="First rules.")
    second = sdk.responses.create(
        model="fake-model",
        input="What is my name?",
        previous_response_id=first.id,
        instructions="Second rules.",
    )
    assert second.previous_response_id == first.id
    assert _messages(upstream) == [
        {"role": "system", "content": "Second rules."},  # the first instructions are not carried over
        {"role": "user", "content": "My name is Ann."},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "What is my name?"},
    ]
    third = sdk.responses.create(model="fake-model", input="And again?", previous_response_id=second.id)
    assert third.instructions is None
    assert _messages(upstream) == [
        {"role": "user", "content": "My name is Ann."},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "What is my name?"},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "And again?"},
    ]
    # input_items lists only this response's own input
    assert [item.content[0].text for item in sdk.responses.input_items.list(third.id)] == ["And again?"]


def test_deleted_previous_response_cannot_be_chained(sdk: openai.OpenAI, provider: Provider) -> None:
    first = sdk.responses.create(model="fake-model", input="Hi")
    sdk.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.create(model="fake-model", input="Hi", previous_response_id=first.id)
    assert caught.value.param == "previous_response_id"


def test_function_tools_and_function_call_output_follow_up(
    sdk: openai.OpenAI, live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key
) -> None:
    upstream.behaviour["fake-model"] = "tool_calls"
    first = sdk.responses.create(model="fake-model", input="Weather and time in Paris?", tools=TOOLS)
    assert first.status == "completed"
    calls = first.output
    assert [(c.type, c.name, c.call_id, c.arguments) for c in calls] == [
        ("function_call", "get_weather", "call_weather", '{"city": "Paris"}'),
        ("function_call", "get_time", "call_time", '{"tz": "CET"}'),
    ]
    assert all(c.id.startswith("fc_") for c in calls)
    chat = [r for r in upstream.requests if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert chat["tools"][0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": TOOLS[0]["parameters"],
            "strict": True,
        },
    }
    assert chat["tool_choice"] == "auto"
    assert chat["parallel_tool_calls"] is True

    upstream.behaviour["fake-model"] = "text"
    reply = post(
        live_gateway,
        project_key[1],
        "/responses",
        {
            "model": "fake-model",
            "previous_response_id": first.id,
            "tools": TOOLS,
            "input": [
                {"type": "function_call_output", "call_id": "call_weather", "output": "Sunny, 21 C"},
                {"type": "function_call_output", "call_id": "call_time", "output": "14:00"},
            ],
        },
    )
    assert reply.status_code == 200
    second = reply.json()
    assert_valid("Response", second)
    assert second["output"][0]["content"][0]["text"] == ANSWER
    assert _messages(upstream) == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_weather",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_time",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_weather", "content": "Sunny, 21 C"},
        {"role": "tool", "tool_call_id": "call_time", "content": "14:00"},
    ]
    items = sdk.responses.input_items.list(second["id"], order="asc")
    assert [(item.type, item.call_id) for item in items.data] == [
        ("function_call_output", "call_weather"),
        ("function_call_output", "call_time"),
    ]
    listed = post(live_gateway, project_key[1], f"/responses/{second['id']}/input_items")  # wrong method
    assert listed.status_code == 405
    raw = get(live_gateway, project_key[1], f"/responses/{second['id']}/input_items")
    assert_valid("ResponseItemList", raw.json())


def test_stateless_function_call_round_trip(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    response = sdk.responses.create(
        model="fake-model",
        tools=TOOLS,
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        input=[
            {"role": "user", "content": "Weather?"},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Oslo"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "Snow"},
        ],
    )
    assert response.output_text == ANSWER
    assert response.tool_choice.type == "function"  # type: ignore[union-attr]
    chat = [r for r in upstream.requests if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["parallel_tool_calls"] is False
    assert chat["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert chat["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "Snow"}
    assert [t.name for t in response.tools] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    items = sdk.responses.input_items.list(response.id, order="asc").to_dict()
    assert_valid("ResponseItemList", items)
    assert [item["type"] for item in items["data"]] == ["message", "function_call", "function_call_output"]


class SmallContextUpstream(FakeUpstream):
    """Refuses, as vLLM does, a conversation longer than three messages."""

    async def _stream(
        self, scope: Any, receive: Any, send: Any, body: dict[str, Any], behaviour: str
    ) -> None:
        if len(body["messages"]) > 3:
            error = {
                "message": "This model's maximum context length is 3 messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
            await self._json(send, 400, {"error": error})
            return
        await super()._stream(scope, receive, send, body, behaviour)


@pytest.mark.parametrize("truncation", ["auto", "disabled"])
def test_truncation_auto_drops_the_oldest_history(sdk: openai.OpenAI, truncation: str) -> None:
    from tests.fixtures import register

    upstream = SmallContextUpstream(["fake-model"]).start()
    try:
        register(upstream)
        first = sdk.responses.create(model="fake-model", input="One")
        second = sdk.responses.create(model="fake-model", input="Two", previous_response_id=first.id)
        third = sdk.responses.create(
            model="fake-model", input="Three", previous_response_id=second.id, truncation=truncation
        )
    finally:
        upstream.stop()
    assert third.truncation == truncation
    if truncation == "disabled":
        assert third.status == "failed"
        assert third.error is not None
        assert third.error.code == "invalid_prompt"
        return
    assert third.status == "completed"
    assert _messages(upstream) == [
        {"role": "user", "content": "Two"},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "Three"},
    ]
