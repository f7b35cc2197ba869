"""The chat request's structure is checked before it is forwarded: 400 with `param`, like
OpenAI, even when the upstream would have answered; unknown fields still pass unchanged."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.errors import InvalidRequest
from inference.chat_validation import check_chat_request, nesting_exceeds
from inference.models import Provider
from inference.tests.fake_upstream import FakeUpstream
from tests.live_server import LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)

USER = {"role": "user", "content": "Hi"}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}

BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"messages": [{"role": "wizard"}]}, "messages[0].role", "invalid_value"),
    ({"messages": [1, 2, 3]}, "messages[0]", "invalid_type"),
    ({"messages": [{"content": "x"}]}, "messages[0].role", "missing_required_parameter"),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type"),
    (
        {"messages": [{"role": "user", "content": [{"type": "video"}]}]},
        "messages[0].content[0].type",
        "invalid_value",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        "messages[0].content[0].text",
        "invalid_type",
    ),
    (
        {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        "messages[0].content[0].type",
        "invalid_value",
    ),
    (
        {"messages": [{"role": "tool", "content": "x"}]},
        "messages[0].tool_call_id",
        "missing_required_parameter",
    ),
    (
        {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]},
        "messages[0].tool_calls[0].function",
        "invalid_type",
    ),
    ({"messages": [{"role": "user", "content": [[[[]]]]}]}, "messages[0].content[0]", "invalid_type"),
    ({"messages": [{"role": {}, "content": None}]}, "messages[0].role", "invalid_value"),
    (
        {"messages": [{"role": "user", "content": [{"type": {}}]}]},
        "messages[0].content[0].type",
        "invalid_value",
    ),
    ({"tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
    ({"tool_choice": {"type": "function"}}, "tool_choice.function.name", "missing_required_parameter"),
    (
        {"tool_choice": {"type": "allowed_tools", "allowed_tools": [None]}},
        "tool_choice.allowed_tools",
        "invalid_type",
    ),
    ({"tools": {"type": "function"}}, "tools", "invalid_type"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0].type", "invalid_value"),
    (
        {"tools": [{"type": "function", "function": {"name": "has space"}}]},
        "tools[0].function.name",
        "invalid_value",
    ),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
        "tools[0].function.parameters",
        "invalid_type",
    ),
    ({"temperature": 3}, "temperature", "decimal_above_max_value"),
    ({"temperature": "hot"}, "temperature", "invalid_type"),
    ({"top_p": -0.1}, "top_p", "decimal_below_min_value"),
    ({"n": 0}, "n", "integer_below_min_value"),
    ({"max_tokens": 1.5}, "max_tokens", "invalid_type"),
    ({"max_completion_tokens": 0}, "max_completion_tokens", "integer_below_min_value"),
    ({"presence_penalty": 2.5}, "presence_penalty", "decimal_above_max_value"),
    ({"top_logprobs": 21}, "top_logprobs", "integer_above_max_value"),
    ({"logprobs": "yes"}, "logprobs", "invalid_type"),
    ({"stop": [1]}, "stop", "invalid_type"),
    ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
    (
        {"response_format": {"type": "json_schema"}},
        "response_format.json_schema",
        "missing_required_parameter",
    ),
    ({"logit_bias": {"50256": 101}}, "logit_bias", "invalid_value"),
]


@pytest.mark.parametrize(("fields", "param", "code"), BAD, ids=[param for _, param, _ in BAD])
def test_bad_structure_is_a_400_with_param_and_nothing_is_forwarded(
    live_gateway: LiveGateway,
    project_key: Any,
    provider: Provider,
    upstream: FakeUpstream,
    fields: dict[str, Any],
    param: str,
    code: str,
) -> None:
    body = {"model": "fake-model", "messages": [USER], **fields}
    for stream in (False, True):
        answer = httpx.post(
            f"{live_gateway.url}/v1/chat/completions",
            json={**body, "stream": stream},
            headers={"Authorization": f"Bearer {project_key[1]}"},
            timeout=15,
        )
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert [r for r in upstream.requests if r["path"] == "/v1/chat/completions"] == []


def test_valid_bodies_pass_and_unknown_fields_are_forwarded_unchanged(
    live_gateway: LiveGateway, project_key: Any, provider: Provider, upstream: FakeUpstream
) -> None:
    body = {
        "model": "fake-model",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hi"},
                    {"type": "image_url", "image_url": {"url": "data:,"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            {
                "role": "assistant",
                "content": [{"type": "refusal", "refusal": "no"}],
                "reasoning_content": "kept",
            },
            {"role": "user", "content": "again", "name": "ann"},
        ],
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "temperature": None,
        "top_p": 1,
        "seed": -5,
        "stop": ["\n"],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        },
        "chat_template_kwargs": {"enable_thinking": False},  # an upstream's extension
        "top_k": 20,
        "guided_json": {"a": [{"b": {}}]},
    }
    answer = httpx.post(
        f"{live_gateway.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {project_key[1]}"},
        timeout=15,
    )
    assert answer.status_code == 200, answer.text
    forwarded = [r for r in upstream.requests if r["path"] == "/v1/chat/completions"][-1]["body"]
    for name in ("chat_template_kwargs", "top_k", "guided_json", "messages", "tools", "tool_choice"):
        assert forwarded[name] == body[name], name


def test_deep_schema_is_refused_and_depth_is_measured_without_recursion() -> None:
    deep: Any = {}
    for _ in range(100_000):
        deep = {"a": deep}
    assert nesting_exceeds(deep, 64)
    assert not nesting_exceeds({"a": [{"b": 1}]}, 3)
    assert nesting_exceeds({"a": [{"b": {}}]}, 3)
    assert not nesting_exceeds("a string is a leaf", 1)
    tool = {"type": "function", "function": {"name": "f", "parameters": deep}}
    with pytest.raises(Exception, match="nested deeper") as caught:
        check_chat_request({"model": "m", "messages": [USER], "tools": [tool]})
    assert caught.value.param == "tools[0].function.parameters"  # type: ignore[attr-defined]


def test_what_openais_spec_allows_passes() -> None:
    """Found by Schemathesis: JSON Schema's integer includes 2.0 (and orjson reads integers beyond
    64 bits as floats); the deprecated function message may hold null content."""
    check_chat_request(
        {
            "messages": [USER, {"role": "function", "name": "f", "content": None}],
            "max_tokens": 4.0,
            "n": 2.0,
            "seed": 2.0**70,
        }
    )
    with pytest.raises(InvalidRequest) as refused:
        check_chat_request({"messages": [USER], "max_tokens": 4.5})
    assert refused.value.param == "max_tokens"
