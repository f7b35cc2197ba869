"""The `conversation` parameter: its items come first, the response's items are appended after."""

from __future__ import annotations

import openai
import pytest

from inference.models import Provider
from inference.tests.fake_upstream import FakeUpstream
from organizations.tests.factories import make_api_key
from responses.tests.helpers import post
from tests.live_server import LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = "Hello from the fake model."


def _messages(upstream: FakeUpstream) -> list[dict]:
    return [r for r in upstream.requests if r["path"] == "/v1/chat/completions"][-1]["body"]["messages"]


def test_conversation_items_go_in_and_come_out(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    conversation = sdk.conversations.create(
        items=[{"type": "message", "role": "user", "content": "My name is Ann."}]
    )
    first = sdk.responses.create(model="fake-model", conversation=conversation.id, input="What is my name?")
    assert first.conversation is not None
    assert first.conversation.id == conversation.id
    assert _messages(upstream) == [
        {"role": "user", "content": "My name is Ann."},
        {"role": "user", "content": "What is my name?"},
    ]
    items = list(sdk.conversations.items.list(conversation.id, order="asc"))
    assert [(item.type, item.role) for item in items] == [  # type: ignore[union-attr]
        ("message", "user"),
        ("message", "user"),
        ("message", "assistant"),
    ]
    assert items[2].content[0].text == ANSWER  # type: ignore[union-attr]
    assert items[2].id == first.output[0].id  # the stored item keeps the output item's id
    # the next turn sees the whole conversation, its own answer included
    sdk.responses.create(model="fake-model", conversation={"id": conversation.id}, input="Again?")
    assert _messages(upstream) == [
        {"role": "user", "content": "My name is Ann."},
        {"role": "user", "content": "What is my name?"},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "Again?"},
    ]
    assert len(list(sdk.conversations.items.list(conversation.id))) == 5


def test_failed_response_is_not_appended(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    conversation = sdk.conversations.create()
    upstream.behaviour["fake-model"] = "error_500"
    response = sdk.responses.create(model="fake-model", conversation=conversation.id, input="Hi")
    assert response.status == "failed"
    assert list(sdk.conversations.items.list(conversation.id)) == []


def test_another_projects_conversation_is_404(
    sdk: openai.OpenAI, live_gateway: LiveGateway, provider: Provider
) -> None:
    conversation = sdk.conversations.create()
    _, other_key = make_api_key()
    reply = post(
        live_gateway,
        other_key,
        "/responses",
        {"model": "fake-model", "input": "x", "conversation": conversation.id},
    )
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "conversation_not_found"


def test_conversation_needs_store(live_gateway: LiveGateway, provider: Provider, project_key) -> None:
    reply = post(
        live_gateway,
        project_key[1],
        "/responses",
        {"model": "fake-model", "input": "x", "conversation": "conv_x", "store": False},
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "store"
