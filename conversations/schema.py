"""OpenAPI documentation of the conversation routes that drf-spectacular cannot describe exactly.

- The conversation-aware chat routes are async Django views, invisible to drf-spectacular;
  their answers are OpenAI's chat completion shapes.
- The Conversations API routes that OpenAI defines are DRF views whose bodies are plain dicts
  (conversations.items validates them); their documentation is OpenAI's operation, vendored
  from the official spec, in place of the generated one, plus jan's `title`. jan's additions
  (`GET /v1/conversations`, `PATCH`) keep the generated documentation.
"""

from __future__ import annotations

from typing import Any

from gateway.schema import ExternalOperation

TAG = "Conversation-aware Chat"

_METADATA = (
    "The answer (and a stream's first chunk, which has an empty delta) carries `metadata`, a map of "
    "strings as OpenAI's `metadata` type requires: `conversation_id`, `conversation_created` "
    '("true"/"false"), `conversation_title`, `ask_item_id` (the stored input item), `completion_item_id` '
    '(the stored assistant message), `store`, `store_reasoning`; ids are "" when nothing is stored. '
    "With `store` the input and the reply are saved as conversation items: the reply's text as an "
    "assistant message, its reasoning (only with `store_reasoning`) as a `reasoning` item, its tool calls as "
    "`function_call` items, with the upstream's usage. A stream is stored from its deltas before `[DONE]`; "
    "a stream that fails or that the client leaves keeps the input and marks the reply `incomplete`."
)
_FLAGS: dict[str, Any] = {
    "store": {"type": "boolean", "description": "Save the turn in the conversation."},
    "store_reasoning": {
        "type": "boolean",
        "default": False,
        "description": "Also save the reply's reasoning (`reasoning_content` / `reasoning`).",
    },
}
_ERRORS = {
    "413": "The body is larger than CHAT_MAX_BODY_BYTES",
    "502": "The model server failed or could not be reached",
    "503": "Every provider of the model is unhealthy",
    "504": "The model server did not answer in time",
}

_CONVERSATIONS = "Conversations"
_TITLE: dict[str, Any] = {
    "title": {
        "type": ["string", "null"],
        "maxLength": 256,
        "description": "jan's conversation title (returned as `title` on the conversation).",
    }
}


def _conversation_op(
    method: str, path: str, operation_id: str, summary: str, **kwargs: Any
) -> ExternalOperation:
    return ExternalOperation(
        path=f"/v1{path}",
        method=method,
        mirror=f"{method.upper()} {path}",
        operation_id=operation_id,
        tag=_CONVERSATIONS,
        summary=summary,
        **kwargs,
    )


CONVERSATION_OPERATIONS = [
    _conversation_op(
        "post",
        "/conversations",
        "createConversation",
        "Create a conversation",
        description="Up to 20 initial items. Owned by the caller (a user, or a service account).",
        request={
            "allOf": [
                {"$ref": "#/components/schemas/CreateConversationBody"},
                {"type": "object", "properties": _TITLE},
            ]
        },
        # As OpenAI documents it: every field is optional, so is the body.
        request_required=False,
        errors=("400", "401", "403", "429"),
        extra_errors={"413": "The body is too large"},
    ),
    _conversation_op("get", "/conversations/{conversation_id}", "getConversation", "Retrieve a conversation"),
    _conversation_op(
        "post",
        "/conversations/{conversation_id}",
        "updateConversation",
        "Update a conversation",
        description="Replaces the metadata (and/or sets jan's `title`). `PATCH` does the same.",
        request={
            "type": "object",
            "properties": {"metadata": {"$ref": "#/components/schemas/Metadata"}, **_TITLE},
        },
    ),
    _conversation_op(
        "delete",
        "/conversations/{conversation_id}",
        "deleteConversation",
        "Delete a conversation",
        description="The conversation is no longer reachable; its items are kept (not listed).",
    ),
    _conversation_op(
        "post",
        "/conversations/{conversation_id}/items",
        "createConversationItems",
        "Create items",
        description="Up to 20 items: messages, function_call, function_call_output, reasoning. All or nothing.",
        extra_errors={"413": "The body is too large"},
    ),
    _conversation_op(
        "get",
        "/conversations/{conversation_id}/items",
        "listConversationItems",
        "List items",
        description="Newest first by default; `after` (jan's `last` too) is the last id of the previous page.",
    ),
    _conversation_op(
        "get", "/conversations/{conversation_id}/items/{item_id}", "getConversationItem", "Retrieve an item"
    ),
    _conversation_op(
        "delete",
        "/conversations/{conversation_id}/items/{item_id}",
        "deleteConversationItem",
        "Delete an item",
        description="Answers the conversation, as OpenAI does.",
    ),
]

OPERATIONS = [
    *CONVERSATION_OPERATIONS,
    ExternalOperation(
        path="/v1/conv/chat/completions",
        method="post",
        mirror="POST /chat/completions",
        operation_id="createConversationChatCompletion",
        tag=TAG,
        summary="Create a chat completion in a conversation",
        description=(
            "A chat completion request (the whole history in `messages`, as for `/v1/chat/completions`, "
            "through the same routing) plus `conversation`: an id of one of the caller's conversations, or "
            "none to start a new one titled from the first user message. With `store: true` (default false) "
            "the last message of `messages` and the reply are saved. " + _METADATA
        ),
        request={
            "allOf": [
                {"$ref": "#/components/schemas/CreateChatCompletionRequest"},
                {
                    "type": "object",
                    "properties": {
                        "conversation": {
                            "type": "string",
                            "description": "A `conv_…` id; absent or empty starts a new conversation.",
                        },
                        **_FLAGS,
                    },
                },
            ]
        },
        extra_errors=_ERRORS,
    ),
    ExternalOperation(
        path="/v1/conv/completions",
        method="post",
        mirror="POST /chat/completions",
        operation_id="createConversationCompletion",
        tag=TAG,
        summary="Continue a conversation with only the new turn",
        description=(
            "The client sends only the new turn as `input`; the gateway rebuilds the history from the "
            "conversation's stored items (the oldest dropped first beyond CONV_HISTORY_MAX_ITEMS items or "
            "CONV_HISTORY_MAX_CHARS characters; reasoning is not sent back), appends the input and calls "
            "the model. Other chat completion parameters (`temperature`, `max_tokens`, `tools`, …) are "
            "passed on. With `store: true` (default false, as on `/v1/conv/chat/completions`) every input "
            "message and the reply are saved; without it the turn uses the history but adds nothing. "
            "Without `conversation_id` a new conversation is started. " + _METADATA
        ),
        request={
            "type": "object",
            "required": ["model", "input"],
            "properties": {
                "model": {"type": "string"},
                "input": {
                    "oneOf": [
                        {"type": "string", "description": "One user message."},
                        {
                            "type": "array",
                            "minItems": 1,
                            "items": {"$ref": "#/components/schemas/ChatCompletionRequestMessage"},
                        },
                    ]
                },
                "conversation_id": {
                    "type": "string",
                    "description": "A `conv_…` id; absent starts a new one.",
                },
                "stream": {"type": "boolean", "default": False},
                "temperature": {"type": "number"},
                "max_tokens": {"type": "integer"},
                **_FLAGS,
            },
            "additionalProperties": True,
        },
        extra_errors=_ERRORS,
    ),
    ExternalOperation(
        path="/v1/conv/models",
        method="get",
        mirror="GET /models",
        operation_id="listConversationModels",
        tag=TAG,
        summary="List models",
        description="The same list as `/v1/models`: the models the caller's project can use right now.",
        errors=("401", "403", "429"),
    ),
]
