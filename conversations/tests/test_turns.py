"""The pure parts of conversation-aware chat: replies into items, items into history."""

from __future__ import annotations

from conversations.turns import Reply, history_messages


def _chunk(delta: dict, finish: str | None = None, index: int = 0) -> dict:  # type: ignore[type-arg]
    return {"choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def test_stream_deltas_accumulate_like_the_sdk() -> None:
    reply = Reply()
    for chunk in [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"reasoning": "vLLM calls it "}),  # current vLLM
        _chunk({"reasoning_content": "reasoning."}),  # DeepSeek, older vLLM
        _chunk({"content": "Hi"}),
        _chunk({"content": "ignored"}, index=1),  # only the first choice is recorded
        _chunk(
            {"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": '{"a"'}}]}
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
        _chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),  # cut before its name
        _chunk({}, "tool_calls"),
        {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
    ]:
        reply.feed(chunk)
    reasoning, message, call = reply.items(message_id="msg_1", store_reasoning=True, failed=False)
    assert reasoning.data["content"] == [{"type": "reasoning_text", "text": "vLLM calls it reasoning."}]
    assert message.public_id == "msg_1"
    assert message.content == [{"type": "output_text", "text": "Hi", "annotations": [], "logprobs": []}]
    assert message.usage == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert message.status == "completed"
    assert call.data == {"call_id": "call_a", "name": "f", "arguments": '{"a": 1}'}
    assert [spec.type for spec in reply.items(message_id="m", store_reasoning=False, failed=True)] == [
        "message",
        "function_call",
    ]
    assert {spec.status for spec in reply.items(message_id="m", store_reasoning=False, failed=True)} == {
        "incomplete"
    }


def test_completion_refusal_and_length_limit() -> None:
    reply = Reply.from_completion(
        {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Par", "refusal": "No."},
                    "finish_reason": "length",
                }
            ]
        }
    )
    [message] = reply.items(message_id="msg_2", store_reasoning=True, failed=False)
    assert message.status == "incomplete"  # cut by max_tokens
    assert message.content[1] == {"type": "refusal", "refusal": "No."}


def test_history_groups_tool_calls_and_skips_empty_and_reasoning() -> None:
    stored = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Q"}]},
        {"type": "reasoning", "summary": []},
        {"type": "message", "role": "assistant", "content": []},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
        {"type": "message", "role": "assistant", "content": [], "status": "incomplete"},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "See"},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
            ],
        },
    ]
    assert history_messages(stored, max_chars=10_000) == [
        {"role": "user", "content": "Q"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "See"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            ],
        },
    ]
