"""Conversation-aware chat (`/v1/conv/chat/completions`, `/v1/conv/completions`) through the
official SDK (strict) against a live gateway and the fake upstream: what is stored follows
`store`/`store_reasoning` exactly, streams carry the metadata first, cut streams keep the input."""

from __future__ import annotations

import time

import httpx
import openai
import orjson
import pytest
from django.db import close_old_connections
from openai.types.chat import ChatCompletion

from conversations.models import Conversation, Item
from conversations.signals import items_added
from inference.models import Provider
from inference.tests.fake_upstream import FakeUpstream
from organizations.tests.factories import make_api_key
from tests.live_server import LiveGateway
from tests.openai_spec import assert_valid

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = "Hello from the fake model."


@pytest.fixture
def conv(live_gateway: LiveGateway, project_key) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    """The strict SDK pointed at /v1/conv, so chat.completions.create calls /v1/conv/chat/completions."""
    return openai.OpenAI(
        base_url=f"{live_gateway.url}/v1/conv",
        api_key=project_key[1],
        max_retries=0,
        _strict_response_validation=True,
    )


def _items(sdk: openai.OpenAI, conversation_id: str) -> list[dict]:  # type: ignore[type-arg]
    page = sdk.conversations.items.list(conversation_id, order="asc", limit=100)
    for item in page.data:
        assert_valid("ConversationItem", item.model_dump(mode="json", exclude_unset=True))
    return [item.model_dump(mode="json", exclude_unset=True) for item in page.data]


def _metadata(obj: object) -> dict[str, str]:
    metadata = (
        obj.model_extra["metadata"] if obj.model_extra and "metadata" in obj.model_extra else obj.metadata
    )  # type: ignore[attr-defined]
    assert isinstance(metadata, dict)
    return metadata


def _chat_requests(upstream: FakeUpstream) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in upstream.requests if r["path"] == "/v1/chat/completions"]


def test_non_stream_store_creates_a_titled_conversation(
    conv: openai.OpenAI, sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    completion = conv.chat.completions.create(
        model="fake-model",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Plan a long weekend trip to the mountains with friends please"},
        ],
        store=True,
    )
    assert completion.choices[0].message.content == REPLY
    assert_valid("CreateChatCompletionResponse", completion.model_dump(mode="json", exclude_unset=True))
    metadata = _metadata(completion)
    assert metadata["conversation_created"] == "true"
    assert metadata["store"] == "true"
    assert metadata["store_reasoning"] == "false"
    assert metadata["conversation_title"] == "Plan a long weekend trip to the mountains with…"
    forwarded = _chat_requests(upstream)[-1]["body"]
    assert "conversation" not in forwarded
    assert "store" not in forwarded
    assert "store_reasoning" not in forwarded

    conversation = sdk.conversations.retrieve(metadata["conversation_id"])
    assert conversation.model_extra["title"] == metadata["conversation_title"]  # type: ignore[index]
    user, assistant = _items(sdk, conversation.id)
    assert user["id"] == metadata["ask_item_id"]
    assert user["role"] == "user"
    assert user["content"] == [
        {"type": "input_text", "text": "Plan a long weekend trip to the mountains with friends please"}
    ]
    assert assistant["id"] == metadata["completion_item_id"]
    assert assistant["status"] == "completed"
    assert assistant["content"] == [{"type": "output_text", "text": REPLY, "annotations": [], "logprobs": []}]
    stored = Item.objects.get(public_id=assistant["id"])
    assert stored.usage == completion.usage.model_dump(exclude_unset=True)  # type: ignore[union-attr]


def test_non_stream_store_false_saves_nothing(
    conv: openai.OpenAI, sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    completion = conv.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "Hi"}], store=False
    )
    metadata = _metadata(completion)
    assert metadata == {
        "conversation_id": "",
        "conversation_created": "false",
        "conversation_title": "",
        "ask_item_id": "",
        "completion_item_id": "",
        "store": "false",
        "store_reasoning": "false",
    }
    existing = sdk.conversations.create(items=[{"role": "user", "content": "Earlier"}])
    again = conv.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "Hi"}],
        extra_body={"conversation": existing.id},
    )
    assert _metadata(again)["conversation_id"] == existing.id
    assert Conversation.objects.count() == 1
    assert Item.objects.count() == 1


@pytest.mark.parametrize("store_reasoning", [False, True])
def test_reasoning_is_stored_only_when_asked(
    conv: openai.OpenAI, sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream, store_reasoning: bool
) -> None:
    upstream.behaviour["fake-reasoner"] = "reasoning"
    conversation = sdk.conversations.create()
    completion = conv.chat.completions.create(
        model="fake-reasoner",
        messages=[{"role": "user", "content": "Think first"}],
        store=True,
        extra_body={"conversation": conversation.id, "store_reasoning": store_reasoning},
    )
    assert completion.choices[0].message.model_extra["reasoning_content"] == "Let me think."  # type: ignore[index]
    types = [item["type"] for item in _items(sdk, conversation.id)]
    if store_reasoning:
        assert types == ["message", "reasoning", "message"]
        reasoning = _items(sdk, conversation.id)[1]
        assert reasoning["content"] == [{"type": "reasoning_text", "text": "Let me think."}]
        assert reasoning["id"].startswith("rs_")
    else:
        assert types == ["message", "message"]
    assert _metadata(completion)["conversation_created"] == "false"
    # A conversation without a title takes it from its first stored turn.
    assert sdk.conversations.retrieve(conversation.id).model_extra["title"] == "Think first"  # type: ignore[index]


def test_tool_calls_are_stored_as_function_call_items(
    conv: openai.OpenAI, sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    upstream.behaviour["fake-model"] = "tool_calls"
    completion = conv.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "Weather and time in Paris?"}], store=True
    )
    metadata = _metadata(completion)
    items = _items(sdk, metadata["conversation_id"])
    assert [item["type"] for item in items] == ["message", "message", "function_call", "function_call"]
    assert items[1]["id"] == metadata["completion_item_id"]
    assert items[1]["content"] == []
    calls = [(item["call_id"], item["name"], item["arguments"]) for item in items[2:]]
    assert calls == [
        ("call_weather", "get_weather", '{"city": "Paris"}'),
        ("call_time", "get_time", '{"tz": "CET"}'),
    ]


def test_stream_metadata_first_then_chunks_then_stored_turn(
    conv: openai.OpenAI, sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    upstream.behaviour["fake-reasoner"] = "reasoning"
    stream = conv.chat.completions.create(
        model="fake-reasoner",
        messages=[{"role": "user", "content": "Stream it"}],
        stream=True,
        store=True,
        extra_body={"store_reasoning": True},
    )
    chunks = list(stream)
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk.model_dump(mode="json", exclude_unset=True))
    first = chunks[0]
    metadata = _metadata(first)
    assert metadata["store"] == "true"
    assert metadata["store_reasoning"] == "true"
    assert first.choices[0].delta.content is None
    assert first.id == chunks[1].id  # the metadata chunk belongs to the same completion
    assert all(chunk.choices for chunk in chunks)  # the usage chunk was not asked for
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == REPLY
    roles = [chunk.choices[0].delta.role for chunk in chunks if chunk.choices[0].delta.role]
    assert roles == ["assistant"]  # sent once, so accumulating clients don't double it

    items = _items(sdk, metadata["conversation_id"])
    assert [item["type"] for item in items] == ["message", "reasoning", "message"]
    assert items[0]["id"] == metadata["ask_item_id"]
    assert items[2]["id"] == metadata["completion_item_id"]
    assert items[1]["content"] == [{"type": "reasoning_text", "text": "Let me think."}]
    assert items[2]["content"][0]["text"] == REPLY
    # The upstream's real usage (the fake counts prompt words: "Stream it" = 2), not an estimate.
    assert Item.objects.get(public_id=items[2]["id"]).usage == {
        "prompt_tokens": 2,
        "completion_tokens": 6,
        "total_tokens": 8,
    }


def test_stream_store_false_saves_nothing_and_relays_usage_when_asked(
    conv: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    stream = conv.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "Count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert _metadata(chunks[0])["store"] == "false"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 7
    assert Conversation.objects.count() == 0
    assert Item.objects.count() == 0


def test_stream_tool_calls_are_assembled_from_deltas(
    conv: openai.OpenAI, sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    upstream.behaviour["fake-model"] = "tool_calls"
    chunks = list(
        conv.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "Tools"}], stream=True, store=True
        )
    )
    items = _items(sdk, _metadata(chunks[0])["conversation_id"])
    calls = [
        (item["call_id"], item["name"], item["arguments"])
        for item in items
        if item["type"] == "function_call"
    ]
    assert calls == [
        ("call_weather", "get_weather", '{"city": "Paris"}'),
        ("call_time", "get_time", '{"tz": "CET"}'),
    ]


def test_cut_stream_keeps_the_input_and_marks_the_reply_incomplete(
    conv: openai.OpenAI, sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    upstream.behaviour["fake-model"] = "cut_mid_stream"
    conversation = sdk.conversations.create()
    stream = conv.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "Tell me everything"}],
        stream=True,
        store=True,
        extra_body={"conversation": conversation.id},
    )
    received: list = []  # type: ignore[type-arg]
    with pytest.raises(openai.APIError) as caught:
        received.extend(stream)
    assert "closed the stream early" in caught.value.message
    metadata = _metadata(received[0])
    user, assistant = _items(sdk, conversation.id)
    assert user["id"] == metadata["ask_item_id"]
    assert user["status"] == "completed"
    assert user["content"][0]["text"] == "Tell me everything"
    assert assistant["id"] == metadata["completion_item_id"]
    assert assistant["status"] == "incomplete"
    assert assistant["content"][0]["text"] == "".join(c.choices[0].delta.content or "" for c in received)


def test_client_that_goes_away_keeps_the_input(
    live_gateway: LiveGateway, project_key, provider: Provider, upstream: FakeUpstream
) -> None:  # type: ignore[no-untyped-def]
    upstream.behaviour["fake-model"] = "slow_stream"
    upstream.delay = 0.05
    with httpx.stream(
        "POST",
        f"{live_gateway.url}/v1/conv/chat/completions",
        json={
            "model": "fake-model",
            "messages": [{"role": "user", "content": "Go slowly"}],
            "stream": True,
            "store": True,
        },
        headers={"Authorization": f"Bearer {project_key[1]}"},
        timeout=10,
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = orjson.loads(next(line for line in lines if line)[len("data: ") :])
        seen = 0
        for line in lines:
            seen += bool(line)
            if seen == 5:
                break
    metadata = first["metadata"]
    assert upstream.wait_for(lambda: upstream.disconnects == 1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        close_old_connections()
        if Item.objects.count() == 2:
            break
        time.sleep(0.05)
    user = Item.objects.get(public_id=metadata["ask_item_id"])
    assistant = Item.objects.get(public_id=metadata["completion_item_id"])
    assert user.content == [{"type": "input_text", "text": "Go slowly"}]
    assert assistant.status == "incomplete"
    assert assistant.content[0]["text"].startswith("Hello from")
    assert Conversation.objects.get().public_id == metadata["conversation_id"]


def test_failures_before_the_stream_write_nothing(
    live_gateway: LiveGateway, project_key, conv: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:  # type: ignore[no-untyped-def]
    upstream.behaviour["fake-model"] = "error_400"
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            conv.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "x"}], store=True, stream=stream
            )
        assert caught.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError) as missing:
        conv.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"conversation": "conv_nope"},
        )
    assert missing.value.code == "conversation_not_found"
    with pytest.raises(openai.NotFoundError) as no_model:
        conv.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}], store=True
        )
    assert no_model.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad_flag:
        conv.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"store_reasoning": "yes"},
        )
    assert bad_flag.value.param == "store_reasoning"
    with pytest.raises(openai.BadRequestError) as bad_role:
        conv.chat.completions.create(
            model="fake-model", messages=[{"role": "wizard", "content": "x"}], store=True
        )  # type: ignore[misc,list-item]
    assert bad_role.value.param == "messages[0].role"
    assert Conversation.objects.count() == 0
    assert Item.objects.count() == 0
    assert len(_chat_requests(upstream)) == 2  # only the two calls that got past validation


def test_another_projects_conversation_is_404(
    conv: openai.OpenAI, live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream
) -> None:
    _, other_key = make_api_key()
    other = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=other_key, max_retries=0)
    theirs = other.conversations.create(items=[{"role": "user", "content": "private"}])
    for path in ("/chat/completions", "/completions"):
        body = {"model": "fake-model", "store": True}
        body.update(
            {"messages": [{"role": "user", "content": "x"}], "conversation": theirs.id}
            if path == "/chat/completions"
            else {"input": "x", "conversation_id": theirs.id}
        )
        with pytest.raises(openai.NotFoundError):
            conv.post(path, body=body, cast_to=ChatCompletion)
    assert Item.objects.count() == 1
    assert _chat_requests(upstream) == []


def test_conv_completions_second_turn_sees_the_first(
    conv: openai.OpenAI, sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    first = conv.post(
        "/completions",
        body={"model": "fake-model", "input": "My name is Ada.", "max_tokens": 50, "store": True},
        cast_to=ChatCompletion,
    )
    assert_valid("CreateChatCompletionResponse", first.model_dump(mode="json", exclude_unset=True))
    metadata = _metadata(first)
    assert metadata["store"] == "true"
    assert metadata["conversation_created"] == "true"
    assert metadata["conversation_title"] == "My name is Ada."
    assert _chat_requests(upstream)[-1]["body"]["messages"] == [
        {"role": "user", "content": "My name is Ada."}
    ]
    assert _chat_requests(upstream)[-1]["body"]["max_tokens"] == 50

    second = conv.post(
        "/completions",
        body={
            "model": "fake-model",
            "input": [{"role": "user", "content": "What is my name?"}],
            "conversation_id": metadata["conversation_id"],
            "temperature": 0.2,
            "store": True,
        },
        cast_to=ChatCompletion,
    )
    assert _metadata(second)["conversation_id"] == metadata["conversation_id"]
    assert _metadata(second)["conversation_created"] == "false"
    forwarded = _chat_requests(upstream)[-1]["body"]
    assert forwarded["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": REPLY},
        {"role": "user", "content": "What is my name?"},
    ]
    assert forwarded["temperature"] == 0.2
    assert "conversation_id" not in forwarded
    assert "input" not in forwarded
    items = _items(sdk, metadata["conversation_id"])
    assert [item["role"] for item in items] == ["user", "assistant", "user", "assistant"]
    assert items[2]["id"] == _metadata(second)["ask_item_id"]


def test_conv_completions_rebuilds_tool_turns_and_drops_the_oldest(
    conv: openai.OpenAI, sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream, settings
) -> None:  # type: ignore[no-untyped-def]
    conversation = sdk.conversations.create(
        items=[
            {"role": "user", "content": "old question " * 10},
            {"role": "assistant", "content": "old answer"},
            {"role": "user", "content": "Weather?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "not sent back"}]},
            {"role": "assistant", "content": "It is sunny."},
        ]
    )
    settings.CONV_HISTORY_MAX_CHARS = 45  # drops the two oldest messages (130 + 10 characters)
    conv.post(
        "/completions",
        body={"model": "fake-model", "input": "Thanks", "conversation_id": conversation.id, "store": True},
        cast_to=ChatCompletion,
    )
    assert _chat_requests(upstream)[-1]["body"]["messages"] == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "Thanks"},
    ]
    settings.CONV_HISTORY_MAX_CHARS = 10_000
    # The newest five items start with a tool result whose call is not among them: it goes too.
    settings.CONV_HISTORY_MAX_ITEMS = 5
    conv.post(
        "/completions",
        body={"model": "fake-model", "input": "Bye", "conversation_id": conversation.id},
        cast_to=ChatCompletion,
    )
    assert _chat_requests(upstream)[-1]["body"]["messages"] == [
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": REPLY},
        {"role": "user", "content": "Bye"},
    ]


def test_conv_completions_stream_and_bad_input(
    live_gateway: LiveGateway,
    project_key,
    sdk: openai.OpenAI,
    provider: Provider,
    upstream: FakeUpstream,
    settings,
) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {project_key[1]}"}
    url = f"{live_gateway.url}/v1/conv/completions"
    with httpx.stream(
        "POST",
        url,
        json={"model": "fake-model", "input": "Hi", "stream": True, "store": True},
        headers=headers,
        timeout=10,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: ") :] for line in response.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    metadata = chunks[0]["metadata"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == REPLY
    assert [item["role"] for item in _items(sdk, metadata["conversation_id"])] == ["user", "assistant"]

    for body, param in [
        ({"model": "fake-model"}, "input"),
        ({"model": "fake-model", "input": []}, "input"),
        ({"model": "fake-model", "input": "x", "messages": []}, "messages"),
        ({"model": "fake-model", "input": [{"role": "tool", "content": "x"}]}, "input[0].call_id"),
        ({"input": "x"}, "model"),
        ({"model": "fake-model", "input": "x", "store": "yes"}, "store"),
    ]:
        response = httpx.post(url, json=body, headers=headers, timeout=10)
        assert response.status_code == 400, body
        assert response.json()["error"]["param"] == param, body
    not_json = httpx.post(url, content=b"{nope", headers=headers, timeout=10)
    assert (not_json.status_code, not_json.json()["error"]["code"]) == (400, "invalid_json")
    settings.CHAT_MAX_BODY_BYTES = 100
    too_big = httpx.post(url, json={"model": "fake-model", "input": "x" * 200}, headers=headers, timeout=10)
    assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "request_too_large")
    assert Item.objects.count() == 2


def test_conv_models_is_the_model_list(sdk: openai.OpenAI, conv: openai.OpenAI, provider: Provider) -> None:
    listed = conv.models.list()
    assert sorted(model.id for model in listed) == ["fake-model", "fake-reasoner"]
    assert [m.model_dump() for m in listed] == [m.model_dump() for m in sdk.models.list()]
    unauthenticated = httpx.get(str(conv.base_url) + "models", timeout=10)
    assert unauthenticated.status_code == 401


def test_items_added_is_sent_for_a_stored_turn(
    conv: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    received: list[tuple[str, list[str]]] = []

    def receiver(sender, conversation, items, **kwargs):  # type: ignore[no-untyped-def]
        received.append((conversation.public_id, [item.public_id for item in items]))

    items_added.connect(receiver)
    try:
        completion = conv.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "Notify"}], store=True
        )
        chunks = list(
            conv.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "Again"}],
                store=True,
                stream=True,
                extra_body={"conversation": _metadata(completion)["conversation_id"]},
            )
        )
    finally:
        items_added.disconnect(receiver)
    first, second = _metadata(completion), _metadata(chunks[0])
    assert received == [
        (first["conversation_id"], [first["ask_item_id"], first["completion_item_id"]]),
        (first["conversation_id"], [second["ask_item_id"], second["completion_item_id"]]),
    ]


def test_sdk_stream_helper_accumulates_the_reply(
    conv: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    upstream.behaviour["fake-model"] = "tool_calls"
    with conv.chat.completions.stream(
        model="fake-model", messages=[{"role": "user", "content": "Use tools"}], store=True
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.role == "assistant"  # the metadata chunk adds no second role
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == [  # type: ignore[union-attr]
        ("call_weather", "get_weather", '{"city": "Paris"}'),
        ("call_time", "get_time", '{"tz": "CET"}'),
    ]
    assert final.choices[0].finish_reason == "tool_calls"
