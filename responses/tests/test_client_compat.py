"""What real clients send the Responses API, as raw HTTP: item references, namespaces, custom
tools, hosted-only tool types, and a web_search tool without live access."""

from __future__ import annotations

from typing import Any

import pytest

from inference.models import Provider
from inference.tests.fake_upstream import FakeUpstream
from organizations.tests.factories import make_api_key
from responses.tests.helpers import get, post, stream_events
from tests.fakes.serper import FakeSerper
from tests.live_server import LiveGateway
from tests.openai_spec import assert_valid

pytestmark = pytest.mark.django_db(transaction=True)

Key = tuple[object, str]


def _chat_bodies(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [r["body"] for r in upstream.requests if r["path"] == "/v1/chat/completions"]


# --- item_reference -----------------------------------------------------------------------


def test_item_references_resolve_to_the_callers_stored_items(
    live_gateway: LiveGateway, project_key: Key, provider: Provider, upstream: FakeUpstream
) -> None:
    """The AI SDK's second turn with store on: earlier output sent back as references only."""
    upstream.behaviour["fake-model"] = "agent"
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]
    first = post(
        live_gateway, project_key[1], "/responses", {"model": "fake-model", "input": "Hi", "tools": tools}
    )
    assert first.status_code == 200, first.text
    output = first.json()["output"]
    assert [item["type"] for item in output] == ["reasoning", "function_call"]
    call = output[1]

    second = post(
        live_gateway,
        project_key[1],
        "/responses",
        {
            "model": "fake-model",
            "tools": tools,
            "input": [
                {"role": "user", "content": "Hi"},
                {"type": "item_reference", "id": output[0]["id"]},
                {"id": call["id"]},  # the spec lets a reference leave out its type
                {"type": "function_call_output", "call_id": call["call_id"], "output": "42"},
            ],
        },
    )
    assert second.status_code == 200, second.text
    assert_valid("Response", second.json())
    assert second.json()["output"][-1]["type"] == "message"
    messages = _chat_bodies(upstream)[-1]["messages"]
    assert messages == [
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call["call_id"], "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": call["call_id"], "content": "42"},
    ]
    # The stored input holds the items themselves, not the references.
    stored = get(live_gateway, project_key[1], f"/responses/{second.json()['id']}/input_items", order="asc")
    assert [item["id"] for item in stored.json()["data"][1:3]] == [output[0]["id"], call["id"]]


def test_item_reference_to_a_conversation_item(
    live_gateway: LiveGateway, project_key: Key, provider: Provider, upstream: FakeUpstream
) -> None:
    created = post(
        live_gateway,
        project_key[1],
        "/conversations",
        {"items": [{"type": "message", "role": "user", "content": "Remember the word tangerine."}]},
    )
    assert created.status_code == 200, created.text
    page = get(live_gateway, project_key[1], f"/conversations/{created.json()['id']}/items")
    item_id = page.json()["data"][0]["id"]
    answer = post(
        live_gateway,
        project_key[1],
        "/responses",
        {
            "model": "fake-model",
            "input": [{"type": "item_reference", "id": item_id}, {"role": "user", "content": "Which word?"}],
        },
    )
    assert answer.status_code == 200, answer.text
    assert _chat_bodies(upstream)[-1]["messages"][0] == {
        "role": "user",
        "content": "Remember the word tangerine.",
    }


def test_unknown_or_foreign_item_reference_is_a_400_with_param(
    live_gateway: LiveGateway, project_key: Key, provider: Provider, upstream: FakeUpstream
) -> None:
    mine = post(live_gateway, project_key[1], "/responses", {"model": "fake-model", "input": "Hi"})
    assert mine.status_code == 200, mine.text
    message_id = mine.json()["output"][0]["id"]
    _other_key, other_raw = make_api_key()  # another organisation's project
    for key, reference in ((project_key[1], "msg_doesnotexist"), (other_raw, message_id)):
        refused = post(
            live_gateway,
            key,
            "/responses",
            {
                "model": "fake-model",
                "input": [{"role": "user", "content": "x"}, {"type": "item_reference", "id": reference}],
            },
        )
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["param"] == "input[1].id"
        assert error["message"] == f"Item with id '{reference}' not found."
        assert error["type"] == "invalid_request_error"


# --- tools ----------------------------------------------------------------------------------

NAMESPACE = {
    "type": "namespace",
    "name": "crm",
    "description": "Customer records",
    "tools": [
        {
            "type": "function",
            "name": "find_customer",
            "parameters": {
                "type": "object",
                "properties": {"email": {"type": "string"}},
                "required": ["email"],
            },
        }
    ],
}
CUSTOM = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Apply a patch",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
}


def test_namespace_tools_are_flattened_and_calls_mapped_back(
    live_gateway: LiveGateway, project_key: Key, provider: Provider, upstream: FakeUpstream
) -> None:
    upstream.behaviour["fake-model"] = "agent"
    answer = post(
        live_gateway,
        project_key[1],
        "/responses",
        {"model": "fake-model", "input": "Who?", "tools": [NAMESPACE]},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert_valid("Response", body)
    assert body["tools"][0]["type"] == "namespace"
    sent = _chat_bodies(upstream)[-1]
    assert [t["function"]["name"] for t in sent["tools"]] == ["crm__find_customer"]
    call = body["output"][-1]
    assert call["type"] == "function_call"
    assert (call["namespace"], call["name"], call["arguments"]) == (
        "crm",
        "find_customer",
        '{"email":"compat"}',
    )

    # The call goes back upstream under its chat name, with its output.
    follow = post(
        live_gateway,
        project_key[1],
        "/responses",
        {
            "model": "fake-model",
            "tools": [NAMESPACE],
            "previous_response_id": body["id"],
            "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "Ann"}],
        },
    )
    assert follow.status_code == 200, follow.text
    messages = _chat_bodies(upstream)[-1]["messages"]
    assert messages[-2]["tool_calls"][0]["function"]["name"] == "crm__find_customer"
    assert messages[-1] == {"role": "tool", "tool_call_id": call["call_id"], "content": "Ann"}


def test_custom_tools_answer_custom_tool_call_items(
    live_gateway: LiveGateway, project_key: Key, provider: Provider, upstream: FakeUpstream
) -> None:
    upstream.behaviour["fake-model"] = "agent"
    request = {
        "model": "fake-model",
        "input": "Patch it",
        "tools": [CUSTOM],
        "tool_choice": {"type": "custom", "name": "apply_patch"},
    }
    answer = post(live_gateway, project_key[1], "/responses", request)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert_valid("Response", body)
    sent = _chat_bodies(upstream)[-1]
    function = sent["tools"][0]["function"]
    assert function["name"] == "apply_patch"
    assert function["parameters"]["required"] == ["input"]
    assert "start: /.+/" in function["description"]  # the grammar is told to the model
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    call = body["output"][-1]
    assert (call["type"], call["name"], call["input"]) == ("custom_tool_call", "apply_patch", "compat")

    events = stream_events(live_gateway, project_key[1], {**request, "stream": True})
    kinds = [e["type"] for e in events]
    assert "response.custom_tool_call_input.done" in kinds
    done = next(e for e in events if e["type"] == "response.custom_tool_call_input.done")
    assert done["input"] == "compat"

    # The output comes back as a custom_tool_call_output input item.
    follow = post(
        live_gateway,
        project_key[1],
        "/responses",
        {
            "model": "fake-model",
            "tools": [CUSTOM],
            "input": [
                {
                    "type": "custom_tool_call",
                    "call_id": call["call_id"],
                    "name": "apply_patch",
                    "input": "compat",
                },
                {"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "Done!"},
            ],
        },
    )
    assert follow.status_code == 200, follow.text
    messages = _chat_bodies(upstream)[-1]["messages"]
    assert messages[0]["tool_calls"][0]["function"] == {
        "name": "apply_patch",
        "arguments": '{"input":"compat"}',
    }
    assert messages[1] == {"role": "tool", "tool_call_id": call["call_id"], "content": "Done!"}
    assert follow.json()["output"][-1]["type"] == "message"


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "computer_use_preview", "display_width": 1, "display_height": 1, "environment": "linux"},
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "image_generation"},
        {"type": "mcp", "server_label": "x", "server_url": "https://example.invalid"},
    ],
)
def test_hosted_only_tools_are_refused_by_name(
    live_gateway: LiveGateway, project_key: Key, provider: Provider, tool: dict[str, Any]
) -> None:
    refused = post(
        live_gateway, project_key[1], "/responses", {"model": "fake-model", "input": "x", "tools": [tool]}
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "tools[0].type"
    assert f"'{tool['type']}'" in error["message"]


def test_web_search_without_external_access_fetches_nothing(
    live_gateway: LiveGateway,
    project_key: Key,
    provider: Provider,
    upstream: FakeUpstream,
    fake_serper: FakeSerper,
) -> None:
    upstream.behaviour["fake-model"] = "agent"
    tool = {"type": "web_search", "external_web_access": False}
    answer = post(
        live_gateway, project_key[1], "/responses", {"model": "fake-model", "input": "News?", "tools": [tool]}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["tools"] == [tool]
    assert [item["type"] for item in body["output"]] == ["reasoning", "message"]
    assert "tools" not in _chat_bodies(upstream)[-1]
    assert fake_serper.requests == []
