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

from django.conf import settings

from conversations import items as wire
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

# --- The input items the gateway stores (conversations.items) ---------------------------------
# OpenAI's InputItem admits every item type of the Responses API; a conversation here holds
# messages, function calls and their outputs, and reasoning. These components say exactly what
# conversations.items accepts, so a body they allow is stored and one they refuse is a 400.


def _text(**keywords: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": settings.CONVERSATIONS_MAX_TEXT_CHARS, **keywords}


def _part(
    kind: str, properties: dict[str, Any], required: tuple[str, ...] = (), **keywords: Any
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"type": {"type": "string", "enum": [kind]}, **properties},
        "required": ["type", *required],
        **keywords,
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _message_of(roles: list[str], *parts: str) -> dict[str, Any]:
    """A message variant: these roles, with a string or a list of these content parts."""
    return {
        "properties": {
            "role": {"type": "string", "enum": roles},
            "content": {"oneOf": [_text(), {"type": "array", "items": {"oneOf": [_ref(p) for p in parts]}}]},
        }
    }


_STATUS: dict[str, Any] = _nullable({"type": "string", "enum": list(wire.STATUSES)})
_ITEM_ID: dict[str, Any] = {
    "type": ["string", "null"],
    "description": "Kept when it is an id of this item type's prefix (`msg_`, `fc_`, `fco_`, `rs_`); "
    "otherwise the item gets a new one.",
}
_LOGPROB_ENTRY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "token": {"type": "string"},
        "logprob": {"type": "number"},
        "bytes": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["token", "logprob", "bytes"],
}
_ANNOTATION_FIELDS = {
    kind: {
        name: {"type": "string", "format": "uri"}
        if name == "url"
        else {"type": "string" if kind_of is str else "integer"}
        for name, kind_of in fields.items()
    }
    for kind, fields in wire.ANNOTATION_FIELDS.items()
}
COMPONENTS: dict[str, Any] = {
    "ConversationInputText": _part("input_text", {"text": _text()}, ("text",)),
    "ConversationInputImage": _part(
        "input_image",
        {
            "image_url": _nullable(_text(format="uri")),
            "file_id": _nullable(_text()),
            "detail": _nullable({"type": "string", "enum": list(wire.IMAGE_DETAILS)}),
        },
        description="Needs a non-empty `image_url` or `file_id`; `detail` defaults to `auto`.",
        anyOf=[
            {"required": ["image_url"], "properties": {"image_url": _text(format="uri", minLength=1)}},
            {"required": ["file_id"], "properties": {"file_id": _text(minLength=1)}},
        ],
    ),
    "ConversationInputFile": _part(
        "input_file",
        {
            name: _nullable(_text(format="uri") if name == "file_url" else _text())
            for name in ("file_id", "file_data", "file_url", "filename")
        },
        description="Needs one of `file_id`, `file_data`, `file_url`.",
        anyOf=[
            {"required": [name], "properties": {name: _text()}}
            for name in ("file_id", "file_data", "file_url")
        ],
    ),
    "ConversationOutputText": _part(
        "output_text",
        {
            "text": _text(),
            "annotations": {
                "type": "array",
                "items": {
                    "oneOf": [
                        _part(kind, fields, tuple(fields)) for kind, fields in _ANNOTATION_FIELDS.items()
                    ]
                },
            },
            "logprobs": _nullable(
                {
                    "type": "array",
                    "items": {
                        **_LOGPROB_ENTRY,
                        "properties": {
                            **_LOGPROB_ENTRY["properties"],
                            "top_logprobs": {"type": "array", "items": _LOGPROB_ENTRY},
                        },
                        "required": [*_LOGPROB_ENTRY["required"], "top_logprobs"],
                    },
                }
            ),
        },
        ("text",),
    ),
    "ConversationRefusal": _part("refusal", {"refusal": _text()}, ("refusal",)),
    "ConversationMessage": {
        "type": "object",
        "description": "A message: `content` is a string or content parts. Assistant messages hold "
        "`output_text` and `refusal` parts (and `input_text`); the other roles `input_text`, "
        "`input_image` and `input_file`.",
        "properties": {
            "type": {"type": "string", "enum": ["message"]},
            "id": _ITEM_ID,
            "status": _STATUS,
            "role": {"type": "string", "enum": list(wire.MESSAGE_ROLES)},
        },
        "required": ["role", "content"],
        "oneOf": [
            _message_of(
                ["assistant"], "ConversationInputText", "ConversationOutputText", "ConversationRefusal"
            ),
            _message_of(
                [r for r in wire.MESSAGE_ROLES if r != "assistant"],
                "ConversationInputText",
                "ConversationInputImage",
                "ConversationInputFile",
            ),
        ],
    },
    "ConversationFunctionCall": _part(
        "function_call",
        {
            "id": _ITEM_ID,
            "status": _STATUS,
            "call_id": _text(minLength=1),
            "name": _text(minLength=1),
            "arguments": _text(),
        },
        ("call_id", "name", "arguments"),
    ),
    "ConversationFunctionCallOutput": _part(
        "function_call_output",
        {
            "id": _ITEM_ID,
            "status": _STATUS,
            "call_id": _text(minLength=1),
            "output": {"oneOf": [_text(), {"type": "array", "items": _ref("ConversationInputText")}]},
        },
        ("call_id", "output"),
    ),
    "ConversationReasoning": _part(
        "reasoning",
        {
            "id": _ITEM_ID,
            "status": _STATUS,
            "summary": {
                "type": "array",
                "items": _part("summary_text", {"text": _text()}, ("text",)),
                "description": "Absent: no summary.",
            },
            "content": _nullable(
                {"type": "array", "items": _part("reasoning_text", {"text": _text()}, ("text",))}
            ),
            "encrypted_content": _nullable(_text()),
        },
    ),
    "ConversationInputItem": {
        "description": "An item to store: a message (`type` may be left out), a function call, a "
        "function call's output, or reasoning.",
        "oneOf": [
            _ref("ConversationMessage"),
            _ref("ConversationFunctionCall"),
            _ref("ConversationFunctionCallOutput"),
            _ref("ConversationReasoning"),
        ],
    },
}


# `/v1/conv/completions`' input messages, each stored as items (conversations.turns): chat
# messages of the roles and content parts a conversation holds.
_CHAT_TEXT = _part("text", {"text": _text()}, ("text",))
_CHAT_PARTS: dict[str, list[dict[str, Any]]] = {
    "user": [
        _CHAT_TEXT,
        _part(
            "image_url",
            {
                "image_url": {
                    "type": "object",
                    "properties": {
                        "url": _text(format="uri", minLength=1),
                        "detail": {"type": "string", "enum": list(wire.IMAGE_DETAILS)},
                    },
                    "required": ["url"],
                }
            },
            ("image_url",),
        ),
        _part(
            "file",
            {
                "file": {
                    "type": "object",
                    "properties": {name: _text() for name in ("file_id", "file_data", "filename")},
                    "anyOf": [{"required": ["file_id"]}, {"required": ["file_data"]}],
                }
            },
            ("file",),
        ),
    ],
    "assistant": [_CHAT_TEXT, _part("refusal", {"refusal": _text()}, ("refusal",))],
    "text": [_CHAT_TEXT],
}


def _chat_message(roles: list[str], parts: str, **properties: Any) -> dict[str, Any]:
    content = {"oneOf": [_text(), {"type": "array", "items": {"oneOf": _CHAT_PARTS[parts]}}]}
    return {
        "type": "object",
        "properties": {
            "role": {"type": "string", "enum": roles},
            "content": content,
            "name": {"type": "string"},
            **properties,
        },
        "required": ["role", "content", *(name for name in properties if name == "tool_call_id")],
    }


_CHAT_ASSISTANT = _chat_message(
    ["assistant"],
    "assistant",
    tool_calls={
        "type": ["array", "null"],
        "items": {
            "type": "object",
            "properties": {
                "id": _text(minLength=1),
                "type": {"type": "string", "enum": ["function"]},
                "function": {
                    "type": "object",
                    "properties": {"name": _text(minLength=1), "arguments": _text()},
                    "required": ["name"],
                },
            },
            "required": ["id", "function"],
        },
    },
)
_CHAT_ASSISTANT["properties"]["content"]["oneOf"].append({"type": "null"})
_CHAT_ASSISTANT["required"] = ["role"]
COMPONENTS["ConversationChatMessage"] = {
    "description": "A chat message a conversation can hold: no audio or video parts, no `function` role, "
    "tool calls of functions only.",
    "oneOf": [
        _chat_message(["user"], "user"),
        _chat_message(["system", "developer"], "text"),
        _CHAT_ASSISTANT,
        _chat_message(["tool"], "text", tool_call_id=_text(minLength=1)),
    ],
}


def _items(*, required: bool) -> dict[str, Any]:
    items: dict[str, Any] = {"type": "array", "maxItems": 20, "items": _ref("ConversationInputItem")}
    if required:
        items["minItems"] = 1
    return items


# An update sets the metadata (an object) or the title (a string), or both; null is "not given".
_UPDATE: dict[str, Any] = {
    "type": "object",
    "properties": {"metadata": _ref("Metadata"), **_TITLE},
    "anyOf": [
        {"required": ["metadata"], "properties": {"metadata": {"type": "object"}}},
        {"required": ["title"], "properties": {"title": {"type": "string"}}},
    ],
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
            "type": "object",
            "properties": {
                "metadata": _ref("Metadata"),
                "items": _nullable(_items(required=False)),
                **_TITLE,
            },
        },
        # As OpenAI documents it: every field is optional, so is the body.
        request_required=False,
        errors=("400", "401", "403", "429"),
        extra_errors={"413": "The body is too large"},
        components=COMPONENTS,
    ),
    _conversation_op("get", "/conversations/{conversation_id}", "getConversation", "Retrieve a conversation"),
    _conversation_op(
        "post",
        "/conversations/{conversation_id}",
        "updateConversation",
        "Update a conversation",
        description="Replaces the metadata (and/or sets jan's `title`). `PATCH` does the same.",
        request=_UPDATE,
    ),
    ExternalOperation(
        path="/v1/conversations/{conversation_id}",
        method="patch",
        mirror="POST /conversations/{conversation_id}",
        operation_id="patchConversation",
        tag=_CONVERSATIONS,
        summary="Update a conversation",
        description="jan's PATCH: the same as POST.",
        request=_UPDATE,
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
        request={"type": "object", "properties": {"items": _items(required=True)}, "required": ["items"]},
        extra_errors={"413": "The body is too large"},
        components=COMPONENTS,
    ),
    _conversation_op(
        "get",
        "/conversations/{conversation_id}/items",
        "listConversationItems",
        "List items",
        description="Newest first by default; `after` (jan's `last` too) is the last id of the previous page.",
        parameter_bounds={"limit": {"minimum": 1, "maximum": 100}},
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
                "model": {"type": "string", "minLength": 1},
                "input": {
                    "oneOf": [
                        {"type": "string", "minLength": 1, "description": "One user message."},
                        {"type": "array", "minItems": 1, "items": _ref("ConversationChatMessage")},
                    ]
                },
                "conversation_id": {
                    "type": "string",
                    "description": "A `conv_…` id; absent starts a new one.",
                },
                "stream": {"type": "boolean", "default": False},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "max_tokens": {"type": "integer", "minimum": 1},
                **_FLAGS,
            },
            "additionalProperties": True,
        },
        extra_errors=_ERRORS,
        components=COMPONENTS,
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
