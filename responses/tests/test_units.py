"""Pure functions: item translation, usage folding, citations, history truncation."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRequest
from responses import translate
from responses.engine import _citations, _truncated
from responses.validation import parse_create


def test_normalised_items_get_ids_and_typed_parts() -> None:
    user = translate.normalise_item({"type": "message", "role": "user", "content": "Hi"})
    assert user["id"].startswith("msg_")
    assert user["content"] == [{"type": "input_text", "text": "Hi"}]
    assistant = translate.normalise_item({"type": "message", "role": "assistant", "content": "Yo"})
    assert assistant["content"] == [{"type": "output_text", "text": "Yo", "annotations": [], "logprobs": []}]
    kept = translate.normalise_item(
        {"type": "function_call", "id": "fc_given", "call_id": "c1", "name": "f", "arguments": "{}"}
    )
    assert kept["id"] == "fc_given"
    assert kept["status"] == "completed"
    output = translate.normalise_item({"type": "function_call_output", "call_id": "c1", "output": "ok"})
    assert output["id"].startswith("fco_")


def test_consecutive_function_calls_become_one_assistant_message() -> None:
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Go"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": [{"type": "input_text", "text": "A"}]},
        {"type": "function_call_output", "call_id": "b", "output": "B"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}},
    ]
    messages = translate.items_to_messages(items)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["a", "b"]
    assert messages[2] == {"role": "tool", "tool_call_id": "a", "content": "A"}


def test_usage_is_summed_over_rounds() -> None:
    usage = translate.add_usage(None, {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14})
    usage = translate.add_usage(
        usage,
        {
            "prompt_tokens": 20,
            "completion_tokens": 6,
            "prompt_tokens_details": {"cached_tokens": 8},
            "completion_tokens_details": {"reasoning_tokens": 3},
        },
    )
    assert usage == {
        "input_tokens": 30,
        "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
        "output_tokens": 10,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 40,
    }
    assert translate.add_usage(None, None) is None


def test_citations_mark_the_first_mention_of_each_source() -> None:
    text = "See https://a.example/x and https://b.example/y, again https://a.example/x."
    sources = {"https://b.example/y": "B", "https://a.example/x": "A", "https://c.example/": "C"}
    found = _citations(text, sources)
    assert [(c["url"], c["title"], text[c["start_index"] : c["end_index"]]) for c in found] == [
        ("https://a.example/x", "A", "https://a.example/x"),
        ("https://b.example/y", "B", "https://b.example/y"),
    ]


def test_truncation_keeps_system_the_last_turn_and_no_orphan_tool_result() -> None:
    messages = [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "a"}]},
        {"role": "tool", "tool_call_id": "a", "content": "A"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "two"},
    ]
    shorter = _truncated(messages)
    assert shorter == [
        {"role": "system", "content": "rules"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "two"},
    ]
    assert _truncated([{"role": "system", "content": "rules"}, {"role": "user", "content": "two"}]) is None


def test_create_checks_agree_with_the_document() -> None:
    """Found by Schemathesis: what the served schema allows passes, what it cannot state has a code."""
    request = parse_create(
        {"model": "m", "input": " ", "max_output_tokens": 16.0, "reasoning": {"effort": "max"}}
    )
    assert (request.max_output_tokens, request.reasoning) == (16, {"effort": "max", "summary": None})
    tool = {"type": "function", "name": "f"}
    for body, param, code in (
        ({"tools": [tool, tool]}, "tools[1].name", "duplicate_tool"),
        (
            {"tools": [tool], "tool_choice": {"type": "function", "name": "g"}},
            "tool_choice.name",
            "unknown_tool",
        ),
        ({"metadata": {"k": "\u0000"}}, "metadata.k", "invalid_value"),
    ):
        with pytest.raises(InvalidRequest) as refused:
            parse_create({"model": "m", "input": "Hi", **body})
        assert (refused.value.param, refused.value.code) == (param, code)
