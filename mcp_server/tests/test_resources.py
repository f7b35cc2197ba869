"""Resource URIs and the markdown renderings of conversations and responses."""

from __future__ import annotations

import pytest

from mcp_server import resources


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("conversation://conv_abc", ("conversation", "conv_abc")),
        ("response://resp_abc", ("response", "resp_abc")),
        ("conversation:///conv_abc", ("conversation", "conv_abc")),
        ("conversation://", None),
        ("conversation://conv_a/items", None),
        ("file:///etc/passwd", None),
        ("https://example.com/conv_abc", None),
        ("not a uri", None),
    ],
)
def test_parse_uri(uri: str, parsed: tuple[str, str] | None) -> None:
    assert resources.parse_uri(uri) == parsed


def test_transcript_renders_every_item_type() -> None:
    conversation = {"id": "conv_1", "created_at": 1700000000, "title": "Trip", "metadata": {}}
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Plan a trip"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "x"}]},
        {"type": "function_call", "name": "get_weather", "arguments": '{"city":"Paris"}', "call_id": "c1"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Weather is fine."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Go."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
    ]
    text = resources.transcript_markdown(conversation, items)
    assert text.startswith("# Conversation conv_1: Trip\nCreated at (Unix): 1700000000\nItems: 8\n\n")
    for expected in (
        "### user\n\nPlan a trip",
        "### user\n\n[image]",
        '### tool call: `get_weather`\n\n```json\n{"city":"Paris"}\n```',
        "### tool result (c1)\n\nsunny",
        "### reasoning\n\nWeather is fine.",
        "### assistant\n\nGo.",
        "### assistant\n\n[refusal] No.",
        '### web_search_call\n\n```json\n{"type": "web_search_call"',
    ):
        assert expected in text
    # Order is kept.
    assert text.index("Plan a trip") < text.index("get_weather") < text.index("Go.")


def test_empty_conversation_and_metadata_title() -> None:
    text = resources.transcript_markdown({"id": "conv_2", "metadata": {"title": "From metadata"}}, [])
    assert text.startswith("# Conversation conv_2: From metadata\n")
    assert "(no items yet)" in text


def test_response_markdown() -> None:
    response = {
        "id": "resp_1",
        "model": "fake-model",
        "status": "completed",
        "output": [
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi!"}]}
        ],
    }
    text = resources.response_markdown(response)
    assert text.startswith("# Response resp_1\nModel: fake-model\nStatus: completed\n\n")
    assert "### assistant\n\nHi!" in text


@pytest.mark.django_db
def test_long_conversations_keep_their_newest_items() -> None:
    from accounts.auth import principal_from_headers
    from conversations import services
    from organizations.tests.factories import make_api_key

    _, raw = make_api_key()
    principal = principal_from_headers({"Authorization": f"Bearer {raw}"})
    conversation = services.conversation_create(
        principal=principal,
        items=[{"type": "message", "role": "user", "content": f"message {n}"} for n in range(1, 6)],
    )
    whole, items, truncated = resources.conversation_read(principal, conversation.public_id, max_items=5)
    assert (len(items), truncated) == (5, False)
    _, items, truncated = resources.conversation_read(principal, conversation.public_id, max_items=2)
    assert truncated is True
    assert [item["content"][0]["text"] for item in items] == ["message 4", "message 5"]
    text = resources.transcript_markdown(whole, items, truncated=truncated)
    assert "Items: the last 2 (older items left out)" in text
    assert "message 3" not in text
