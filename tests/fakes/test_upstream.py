"""The fake model server itself, checked with the official openai SDK pointed straight at it.

If these pass, a gateway test that fails is about the gateway, not about the fake.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.fixtures import MakeFakeUpstream
from tests.fakes.upstream import BEHAVIOURS, TOOL_CALLS, FakeUpstream
from tests.openai_spec import assert_valid

MESSAGES: list[Any] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there world"},
]
PROMPT_TOKENS = 5  # words across both messages


def client(upstream: FakeUpstream, **options: Any) -> openai.OpenAI:
    # No retries: a scripted 5xx must surface at once, not after the SDK's back-off.
    return openai.OpenAI(base_url=upstream.url("/v1"), api_key="provider-key", max_retries=0, **options)


def sse_events(raw: str) -> list[str]:
    return [line.removeprefix("data: ") for line in raw.split("\n\n") if line.startswith("data: ")]


def test_models_list(fake_upstream: FakeUpstream) -> None:
    fake_upstream.models = ["a", "b"]
    listed = client(fake_upstream).models.list()
    assert [m.id for m in listed.data] == ["a", "b"]
    raw = httpx.get(fake_upstream.url("/v1/models")).json()
    assert raw["object"] == "list"
    assert set(raw["data"][0]) == {"id", "object", "created", "owned_by"}
    assert raw["data"][0]["object"] == "model"
    assert_valid("ListModelsResponse", raw)


def test_non_stream_text_and_recording(fake_upstream: FakeUpstream) -> None:
    completion = client(fake_upstream).chat.completions.create(
        model="fake-model",
        messages=MESSAGES,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
        extra_headers={"X-Request-ID": "req-123"},
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "fake-model"
    assert completion.choices[0].message.content == "Echo: hello there world"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (PROMPT_TOKENS, 4)
    assert completion.usage.total_tokens == PROMPT_TOKENS + 4

    seen = fake_upstream.last_request
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.header("Authorization") == "Bearer provider-key"
    assert seen.header("x-request-id") == "req-123"
    assert seen.body["chat_template_kwargs"] == {"enable_thinking": False}  # unknown field recorded
    assert seen.behaviour == "text"
    assert seen.completion_id == completion.id

    raw = httpx.post(
        fake_upstream.url("/v1/chat/completions"), json={"model": "m", "messages": MESSAGES}
    ).json()
    assert raw["choices"][0]["logprobs"] is None
    assert raw["choices"][0]["message"]["refusal"] is None
    assert_valid("CreateChatCompletionResponse", raw)


def test_stream_with_usage(fake_upstream: FakeUpstream) -> None:
    stream = client(fake_upstream).chat.completions.create(
        model="fake-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: hello there world"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.prompt_tokens == PROMPT_TOKENS
    assert len({c.id for c in chunks}) == 1
    assert fake_upstream.last_request.body["stream_options"] == {"include_usage": True}
    assert fake_upstream.wait_for(lambda: fake_upstream.streams_completed == 1)

    # The raw bytes: every chunk valid, usage: null on content chunks, [DONE] last.
    raw = httpx.post(
        fake_upstream.url("/v1/chat/completions"),
        json={"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = sse_events(raw.text)
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        assert_valid("CreateChatCompletionStreamResponse", json.loads(event))
    assert json.loads(events[1])["usage"] is None


def test_stream_without_usage_sends_no_usage_chunk(fake_upstream: FakeUpstream) -> None:
    raw = httpx.post(
        fake_upstream.url("/v1/chat/completions"), json={"model": "m", "messages": MESSAGES, "stream": True}
    )
    events = [json.loads(e) for e in sse_events(raw.text)[:-1]]
    assert all(e["choices"] for e in events)
    assert all("usage" not in e for e in events)
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


def test_no_usage_behaviour(fake_upstream: FakeUpstream) -> None:
    fake_upstream.behaviour = "no_usage"
    sdk = client(fake_upstream)
    assert sdk.chat.completions.create(model="m", messages=MESSAGES).usage is None
    chunks = list(
        sdk.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.usage is None and c.choices for c in chunks)


def test_tool_calls_streamed_and_joined_by_the_sdk(fake_upstream: FakeUpstream) -> None:
    fake_upstream.behaviour = "tool_calls"
    with client(fake_upstream).chat.completions.stream(model="fake-model", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.role == "assistant"  # sent once: no "assistantassistant"
    assert message.tool_calls is not None
    calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls]
    assert calls == [
        ("call_fake_weather", "get_weather", {"city": "Paris"}),
        ("call_fake_time", "get_time", {"timezone": "Europe/Paris"}),
    ]

    # The wire shape: id/type/name only in the first delta of each index.
    raw = httpx.post(
        fake_upstream.url("/v1/chat/completions"), json={"model": "m", "messages": MESSAGES, "stream": True}
    )
    deltas = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in map(json.loads, sse_events(raw.text)[:-1])
        if c["choices"][0]["delta"].get("tool_calls")
    ]
    firsts = [d for d in deltas if "id" in d]
    assert [(d["index"], d["type"], d["function"]["arguments"]) for d in firsts] == [
        (0, "function", ""),
        (1, "function", ""),
    ]
    assert all(
        set(d) == {"index", "function"} and set(d["function"]) == {"arguments"}
        for d in deltas
        if "id" not in d
    )

    completion = client(fake_upstream).chat.completions.create(model="m", messages=MESSAGES)
    assert completion.choices[0].message.content is None
    assert [c.id for c in completion.choices[0].message.tool_calls or []] == [c["id"] for c in TOOL_CALLS]
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(deltas)


def test_reasoning(fake_upstream: FakeUpstream) -> None:
    fake_upstream.set_behaviour("reasoning", model="fake-reasoner")
    sdk = client(fake_upstream)
    completion = sdk.chat.completions.create(model="fake-reasoner", messages=MESSAGES)
    message = completion.choices[0].message
    assert message.content == "Echo: hello there world"
    assert getattr(message, "reasoning_content", None) == "Let me think about it."
    assert completion.usage is not None
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 5

    chunks = list(sdk.chat.completions.create(model="fake-reasoner", messages=MESSAGES, stream=True))
    kinds = [
        "r" if (c.choices[0].delta.model_extra or {}).get("reasoning_content") else "c"
        for c in chunks
        if c.choices[0].delta.content or (c.choices[0].delta.model_extra or {}).get("reasoning_content")
    ]
    assert "".join(kinds) == "rrrrrcccc"  # reasoning first, then content

    # Other models keep the global behaviour.
    assert (
        sdk.chat.completions.create(model="fake-model", messages=MESSAGES).choices[0].message.model_extra
        == {}
    )

    fake_upstream.reasoning_field = "reasoning"  # current vLLM's name
    message = sdk.chat.completions.create(model="fake-reasoner", messages=MESSAGES).choices[0].message
    assert getattr(message, "reasoning", None) == "Let me think about it."


def test_length(fake_upstream: FakeUpstream) -> None:
    fake_upstream.behaviour = "length"
    completion = client(fake_upstream).chat.completions.create(model="m", messages=MESSAGES, max_tokens=2)
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "Echo: hello"


def test_errors(fake_upstream: FakeUpstream) -> None:
    sdk = client(fake_upstream)
    fake_upstream.behaviour = "error_500"
    with pytest.raises(openai.InternalServerError) as crashed:
        sdk.chat.completions.create(model="m", messages=MESSAGES)
    assert crashed.value.status_code == 500
    assert crashed.value.type == "server_error"

    fake_upstream.behaviour = "error_400"
    with pytest.raises(openai.BadRequestError) as too_long:
        sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert too_long.value.code == "context_length_exceeded"
    assert too_long.value.param == "messages"

    fake_upstream.behaviour = "error_429"
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="m", messages=MESSAGES)
    limited = httpx.post(fake_upstream.url("/v1/chat/completions"), json={"model": "m", "messages": MESSAGES})
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "1")

    fake_upstream.behaviour = "text"
    fake_upstream.fail_models = True
    with pytest.raises(openai.InternalServerError):
        sdk.models.list()
    sdk.chat.completions.create(model="m", messages=MESSAGES)  # chat still works

    fake_upstream.down = True
    with pytest.raises(openai.InternalServerError) as down:
        sdk.chat.completions.create(model="m", messages=MESSAGES)
    assert down.value.status_code == 503

    fake_upstream.down = False
    fake_upstream.reject_unknown_models = True
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="not-served", messages=MESSAGES)

    with pytest.raises(ValueError, match="unknown fake upstream behaviour"):
        fake_upstream.behaviour = "nonsense"


def test_cut_mid_stream(fake_upstream: FakeUpstream) -> None:
    fake_upstream.behaviour = "cut_mid_stream"
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            fake_upstream.url("/v1/chat/completions"),
            json={"model": "m", "messages": MESSAGES, "stream": True},
        ) as response,
    ):
        received.extend(response.iter_lines())
    events = [e for e in received if e.startswith("data: ")]
    assert len(events) == 3  # role chunk + two content chunks, no finish chunk, no [DONE]
    assert "data: [DONE]" not in received

    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(fake_upstream.url("/v1/chat/completions"), json={"model": "m", "messages": MESSAGES})
    assert fake_upstream.disconnects == 0  # the server hung up, not the client


def test_client_disconnect_is_counted(fake_upstream: FakeUpstream) -> None:
    fake_upstream.behaviour = "slow_stream"
    fake_upstream.chunk_delay = 0.02
    stream = client(fake_upstream).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    for n, _ in enumerate(stream):
        if n == 3:
            break
    stream.close()
    assert fake_upstream.wait_for_disconnect(timeout=3)
    assert fake_upstream.disconnected.is_set()
    assert fake_upstream.wait_for(lambda: fake_upstream.open_responses == 0)
    assert (fake_upstream.streams_started, fake_upstream.streams_completed) == (1, 0)


def test_slow_first_byte_and_client_timeout(fake_upstream: FakeUpstream) -> None:
    fake_upstream.behaviour = "slow_first_byte"
    fake_upstream.first_byte_delay = 0.2
    sdk = client(fake_upstream)
    assert sdk.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content

    fake_upstream.first_byte_delay = 5
    with pytest.raises(openai.APITimeoutError):
        client(fake_upstream, timeout=0.2).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert fake_upstream.wait_for_disconnect(timeout=3)


def test_stop_refuses_connections_then_restarts_on_the_same_port(
    make_fake_upstream: MakeFakeUpstream,
) -> None:
    first, second = make_fake_upstream(["a"]), make_fake_upstream(["b"], behaviour="error_500")
    assert first.base_url != second.base_url
    assert second.behaviour == "error_500"
    url = first.url("/v1/models")
    first.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    first.start()
    assert httpx.get(url).json()["data"][0]["id"] == "a"

    with FakeUpstream(["ctx"]) as third:
        assert httpx.get(third.url("/v1/models")).status_code == 200
    assert not third.running


def test_stop_drops_open_streams_quickly(make_fake_upstream: MakeFakeUpstream) -> None:
    upstream = make_fake_upstream(behaviour="slow_stream", chunk_delay=1.0)
    with httpx.stream(
        "POST",
        upstream.url("/v1/chat/completions"),
        json={"model": "m", "messages": MESSAGES, "stream": True},
    ) as response:
        assert response.status_code == 200
        upstream.stop()  # must not wait for the 200 slow chunks


def test_behaviour_list_is_what_the_docs_promise() -> None:
    assert {
        "text",
        "reasoning",
        "tool_calls",
        "length",
        "error_500",
        "error_400",
        "cut_mid_stream",
        "slow_first_byte",
        "slow_stream",
        "no_usage",
    } <= BEHAVIOURS
