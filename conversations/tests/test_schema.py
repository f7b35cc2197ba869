"""The conversation routes in the OpenAPI schema: OpenAI's shapes where OpenAI defines them."""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    generated: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    return generated


def _ok(operation: dict[str, Any], content_type: str = "application/json") -> Any:
    return operation["responses"]["200"]["content"][content_type]["schema"]


def test_openai_operations_use_openais_shapes(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    conversation = {"$ref": "#/components/schemas/ConversationResource"}
    assert _ok(paths["/v1/conversations"]["post"]) == conversation
    assert _ok(paths["/v1/conversations/{conversation_id}"]["get"]) == conversation
    assert _ok(paths["/v1/conversations/{conversation_id}/items/{item_id}"]["delete"]) == conversation
    assert _ok(paths["/v1/conversations/{conversation_id}"]["delete"]) == {
        "$ref": "#/components/schemas/DeletedConversationResource"
    }
    items = {"$ref": "#/components/schemas/ConversationItemList"}
    assert _ok(paths["/v1/conversations/{conversation_id}/items"]["get"]) == items
    assert _ok(paths["/v1/conversations/{conversation_id}/items"]["post"]) == items
    for name in ("ConversationResource", "ConversationItemList", "ConversationItem", "InputItem"):
        assert name in schema["components"]["schemas"]


def test_conversation_aware_chat_is_documented(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    for path in ("/v1/conv/chat/completions", "/v1/conv/completions"):
        operation = paths[path]["post"]
        assert operation["tags"] == ["Conversation-aware Chat"]
        assert _ok(operation) == {"$ref": "#/components/schemas/CreateChatCompletionResponse"}
        assert _ok(operation, "text/event-stream") == {
            "$ref": "#/components/schemas/CreateChatCompletionStreamResponse"
        }
        assert {"401", "404", "502"} <= set(operation["responses"])
    assert _ok(paths["/v1/conv/models"]["get"]) == {"$ref": "#/components/schemas/ListModelsResponse"}
    # jan's list keeps the generated documentation.
    assert _ok(paths["/v1/conversations"]["get"]) == {"$ref": "#/components/schemas/ConversationListOut"}
