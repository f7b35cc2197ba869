"""Conversation-aware chat: between chat messages and conversation items.

Pure functions and small data holders (no database, no network): chat messages → items to
store, stored items → the chat history sent upstream, and the accumulation of a reply (a
completion's message, or a stream's deltas) into the items that record it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conversations import items as wire
from conversations.items import ItemSpec
from gateway.errors import InvalidRequest
from gateway.ids import public_id, random_token

if TYPE_CHECKING:
    from conversations.models import Conversation

TITLE_CHARS = 50
UNTITLED = "New Conversation"


def title_from(messages: list[dict[str, Any]]) -> str:
    """The first user message's text, whitespace collapsed, cut at a word within 50 characters.

    (The seed cut 50 *bytes*, which could split a UTF-8 character, and appended "...".)
    """
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        text = " ".join(_plain_text(message.get("content")).split())
        if not text:
            continue
        if len(text) <= TITLE_CHARS:
            return text
        cut = text[:TITLE_CHARS]
        if " " in cut[TITLE_CHARS // 2 :]:
            cut = cut[: cut.rindex(" ")]
        return cut.rstrip() + "…"
    return UNTITLED


def _plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text")
        )
    return ""


# --- Chat messages → items ---------------------------------------------------------------


def _chat_part(part: Any, param: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise InvalidRequest(
            f"Invalid type for '{param}': expected an object.", param=param, code="invalid_type"
        )
    kind = part.get("type")
    if kind == "text":
        return {"type": "input_text", "text": part.get("text")}
    if kind == "image_url":
        image = part["image_url"] if isinstance(part.get("image_url"), dict) else {}
        return {"type": "input_image", "image_url": image.get("url"), "detail": image.get("detail")}
    if kind == "file":
        file = part["file"] if isinstance(part.get("file"), dict) else {}
        return {
            "type": "input_file",
            **{k: v for k, v in file.items() if k in ("file_id", "file_data", "filename")},
        }
    if kind == "refusal":
        return {"type": "refusal", "refusal": part.get("refusal")}
    raise InvalidRequest(
        f"Invalid value for '{param}.type': content parts of type '{kind}' cannot be stored.",
        param=f"{param}.type",
        code="invalid_value",
    )


def message_items(message: Any, param: str) -> list[ItemSpec]:
    """One chat message as the items that store it (an assistant message with tool calls is a
    message plus one function_call item per call; a tool message is a function_call_output)."""
    if not isinstance(message, dict):
        raise InvalidRequest(
            f"Invalid type for '{param}': expected an object.", param=param, code="invalid_type"
        )
    role = message.get("role")
    content = message.get("content")
    raw: list[dict[str, Any]] = []
    if role == "tool":
        output = content if isinstance(content, str) else _plain_text(content)
        raw.append({"type": "function_call_output", "call_id": message.get("tool_call_id"), "output": output})
    elif role == "assistant":
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            parts.append({"type": "output_text", "text": content})
        elif isinstance(content, list):
            for index, part in enumerate(content):
                converted = _chat_part(part, f"{param}.content[{index}]")
                if converted["type"] == "input_text":
                    converted["type"] = "output_text"
                parts.append(converted)
        raw.append({"type": "message", "role": "assistant", "content": parts})
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            function = function if isinstance(function, dict) else {}
            raw.append(
                {
                    "type": "function_call",
                    "call_id": call.get("id") if isinstance(call, dict) else None,
                    "name": function.get("name"),
                    "arguments": function.get("arguments", ""),
                }
            )
    elif role in ("user", "system", "developer"):
        if isinstance(content, list):
            content = [_chat_part(part, f"{param}.content[{index}]") for index, part in enumerate(content)]
        raw.append({"type": "message", "role": role, "content": content})
    else:
        raise InvalidRequest(
            f"Invalid value for '{param}.role': expected one of system, developer, user, assistant, tool.",
            param=f"{param}.role",
            code="invalid_value",
        )
    specs = [wire.parse_item(item, param) for item in raw]
    for spec in specs:
        spec.public_id = wire.new_item_id(spec.type)
    return specs


# --- Items → chat history ----------------------------------------------------------------


def _history_part(part: dict[str, Any]) -> dict[str, Any] | None:
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part.get("text", "")}
    if kind == "input_image" and part.get("image_url"):
        return {
            "type": "image_url",
            "image_url": {"url": part["image_url"], "detail": part.get("detail", "auto")},
        }
    if kind == "input_file":
        return {
            "type": "file",
            "file": {k: v for k, v in part.items() if k in ("file_id", "file_data", "filename")},
        }
    return None  # refusals, images by file id: nothing a chat upstream can take back


def _message(role: str, content: list[dict[str, Any]]) -> dict[str, Any] | None:
    parts = [p for p in (_history_part(part) for part in content) if p is not None]
    if all(part["type"] == "text" for part in parts):
        text = "".join(part["text"] for part in parts)
        if not text and role != "assistant":
            return None
        return {"role": role, "content": text}
    return {"role": role, "content": parts}


def _size(message: dict[str, Any]) -> int:
    content = message.get("content")
    size = len(content) if isinstance(content, str) else len(_plain_text(content))
    for call in message.get("tool_calls") or []:
        size += len(call["function"]["arguments"]) + len(call["function"]["name"])
    return size


def history_messages(stored: list[dict[str, Any]], *, max_chars: int) -> list[dict[str, Any]]:
    """Stored items (oldest first, as `item_object` renders them) → chat messages.

    Reasoning items are not sent back: chat upstreams take no reasoning input. Beyond
    `max_chars` the oldest messages are dropped first; a tool result whose call was dropped
    goes with it, since an upstream rejects a `tool` message without its call.
    """
    messages: list[dict[str, Any]] = []
    for item in stored:
        kind = item["type"]
        if kind == "message":
            message = _message(item["role"], item.get("content") or [])
            if message is not None:
                messages.append(message)
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item.get("arguments", "")},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":  # the calls of that reply
                last.setdefault("tool_calls", []).append(call)
                if last.get("content") == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": output if isinstance(output, str) else _plain_text(output),
                }
            )
    # An assistant message that stayed empty (a cut reply with nothing in it) says nothing.
    messages = [
        m
        for m in messages
        if not (m["role"] == "assistant" and m.get("content") in ("", None) and not m.get("tool_calls"))
    ]
    total = sum(_size(message) for message in messages)
    start = 0
    while start < len(messages) and total > max_chars:
        total -= _size(messages[start])
        start += 1
    while start < len(messages) and messages[start]["role"] == "tool":
        start += 1
    return messages[start:]


# --- A reply → items ---------------------------------------------------------------------


@dataclass
class Reply:
    """What the model said, from a completion's message or accumulated from stream deltas
    (first choice only: a conversation records one reply per turn)."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, str]] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None

    @classmethod
    def from_completion(cls, completion: dict[str, Any]) -> Reply:
        reply = cls(usage=completion.get("usage") if isinstance(completion.get("usage"), dict) else None)
        choices = completion.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            return reply
        choice = choices[0]
        reply.finish_reason = choice.get("finish_reason")
        message = choice.get("message") or {}
        reply._add(message)
        for index, call in enumerate(message.get("tool_calls") or []):
            function = call.get("function") or {}
            reply.tool_calls[index] = {
                "id": str(call.get("id") or ""),
                "name": str(function.get("name") or ""),
                "arguments": str(function.get("arguments") or ""),
            }
        return reply

    def _add(self, message: dict[str, Any]) -> None:
        if isinstance(message.get("content"), str):
            self.content.append(message["content"])
        # vLLM now says `reasoning`, DeepSeek and older vLLM `reasoning_content`.
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if isinstance(reasoning, str):
            self.reasoning.append(reasoning)
        if isinstance(message.get("refusal"), str):
            self.refusal.append(message["refusal"])

    def feed(self, chunk: dict[str, Any]) -> None:
        """Accumulate one stream chunk (tool calls by index: id and name once, arguments appended)."""
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            self._add(delta)
            for call in delta.get("tool_calls") or []:
                slot = self.tool_calls.setdefault(
                    int(call.get("index", 0)), {"id": "", "name": "", "arguments": ""}
                )
                function = call.get("function") or {}
                if call.get("id"):
                    slot["id"] = str(call["id"])
                if function.get("name") and not slot["name"]:
                    slot["name"] = str(function["name"])  # sent once, in the call's first delta
                if function.get("arguments"):
                    slot["arguments"] += str(function["arguments"])

    def items(self, *, message_id: str, store_reasoning: bool, failed: bool) -> list[ItemSpec]:
        """Reasoning (only when asked to keep it), the assistant message, then its tool calls.

        The assistant message is always written so `completion_item_id` names a real item;
        a reply cut short (failure, cancel, length limit) is stored as `incomplete`.
        """
        status = "incomplete" if failed or self.finish_reason == "length" else "completed"
        specs: list[ItemSpec] = []
        reasoning = "".join(self.reasoning)
        if store_reasoning and reasoning:
            specs.append(
                ItemSpec(
                    type="reasoning",
                    public_id=wire.new_item_id("reasoning"),
                    status=status,
                    data={"summary": [], "content": [{"type": "reasoning_text", "text": reasoning}]},
                )
            )
        content: list[dict[str, Any]] = []
        text = "".join(self.content)
        if text:
            content.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
        refusal = "".join(self.refusal)
        if refusal:
            content.append({"type": "refusal", "refusal": refusal})
        specs.append(
            ItemSpec(
                type="message",
                public_id=message_id,
                role="assistant",
                status=status,
                content=content,
                usage=self.usage,
            )
        )
        for _, call in sorted(self.tool_calls.items()):
            if not call["name"]:
                continue  # cut before the name arrived: nothing a client could run
            specs.append(
                ItemSpec(
                    type="function_call",
                    public_id=wire.new_item_id("function_call"),
                    status=status,
                    data={
                        "call_id": call["id"] or f"call_{random_token(24)}",
                        "name": call["name"],
                        "arguments": call["arguments"],
                    },
                )
            )
        return specs


# --- A turn ------------------------------------------------------------------------------


def _flag_text(value: bool) -> str:
    return "true" if value else "false"


@dataclass
class Turn:
    """One conversation-aware chat request, resolved and validated before the upstream call."""

    body: dict[str, Any]  # what goes upstream
    store: bool
    store_reasoning: bool
    include_usage: bool
    conversation_pk: int | None  # an existing conversation
    conversation_id: str | None  # its public id, or the one announced for a new conversation
    conversation_created: bool
    title: str | None
    retitle: str | None  # a title for an existing untitled conversation, set when storing
    inputs: list[ItemSpec]
    ask_item_id: str | None
    completion_item_id: str | None

    def metadata(self) -> dict[str, str]:
        """jan's turn metadata, as OpenAI's `metadata` type: a map of strings.

        A chat completion's `metadata` is `Metadata` (string values) in OpenAI's spec, and the
        SDKs with strict validation reject anything else; jan-server's JSON booleans and nulls
        are therefore "true"/"false" and "" here (the same in the stream's first chunk).
        """
        return {
            "conversation_id": self.conversation_id or "",
            "conversation_created": _flag_text(self.conversation_created),
            "conversation_title": self.title or "",
            "ask_item_id": self.ask_item_id or "",
            "completion_item_id": self.completion_item_id or "",
            "store": _flag_text(self.store),
            "store_reasoning": _flag_text(self.store_reasoning),
        }

    def metadata_chunk(self, first: dict[str, Any] | None) -> dict[str, Any]:
        """The stream's first event: a valid chunk (same id, created and model as the
        upstream's) with an empty delta, carrying the conversation metadata."""
        first = first or {}
        return {
            "id": first.get("id") or f"chatcmpl-{random_token(29)}",
            "object": "chat.completion.chunk",
            "created": first.get("created") or int(time.time()),
            "model": first.get("model") or self.body.get("model"),
            "choices": [{"index": 0, "delta": {}, "finish_reason": None, "logprobs": None}],
            "metadata": self.metadata(),
        }


# --- Building a turn from a request --------------------------------------------------------


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.pop(name, None)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(
            f"Invalid type for '{name}': expected a boolean.", param=name, code="invalid_type"
        )
    return value


def take_options(
    body: dict[str, Any], *, names: tuple[str, ...], store_default: bool
) -> tuple[str | None, bool, bool]:
    """Remove our fields from a chat body: (conversation id, store, store_reasoning)."""
    conversation_id: Any = None
    for name in names:
        value = body.pop(name, None)
        if conversation_id is None and value not in (None, ""):
            conversation_id, param = value, name
    if isinstance(conversation_id, dict):  # the Responses API's {"id": "conv_…"} form
        conversation_id = conversation_id.get("id")
    if conversation_id is not None and not isinstance(conversation_id, str):
        raise InvalidRequest(
            f"Invalid type for '{param}': expected a conversation id.", param=param, code="invalid_type"
        )
    store = _flag(body, "store", store_default)
    store_reasoning = _flag(body, "store_reasoning", False)
    return conversation_id, store, store_reasoning


def new_turn(
    body: dict[str, Any],
    *,
    conversation: Conversation | None,
    inputs: list[list[ItemSpec]],
    title_source: list[dict[str, Any]],
    store: bool,
    store_reasoning: bool,
) -> Turn:
    """`inputs`: the items of each input message to store; the last message is the "ask"."""
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    title: str | None = None
    retitle: str | None = None
    conversation_id: str | None = None
    created = False
    if conversation is not None:
        conversation_id = conversation.public_id
        title = conversation.title or None
        if store and conversation.title in ("", UNTITLED):
            # Untitled conversations take their title from the first turn that is stored.
            candidate = title_from(title_source)
            retitle = candidate if candidate != UNTITLED else None
            title = retitle or title
    elif store:
        conversation_id = public_id("conv", 40)
        created = True
        title = title_from(title_source)
    return Turn(
        body=body,
        store=store,
        store_reasoning=store_reasoning,
        include_usage=include_usage,
        conversation_pk=conversation.pk if conversation is not None else None,
        conversation_id=conversation_id,
        conversation_created=created,
        title=title,
        retitle=retitle,
        inputs=[spec for group in inputs for spec in group] if store else [],
        ask_item_id=inputs[-1][0].public_id if store and inputs and inputs[-1] else None,
        completion_item_id=wire.new_item_id("message") if store else None,
    )


def input_messages(raw: Any) -> list[dict[str, Any]]:
    """`/v1/conv/completions`' `input`: a string (one user message) or a list of messages."""
    if isinstance(raw, str):
        if not raw:
            raise InvalidRequest("Invalid 'input': empty string.", param="input", code="empty_string")
        return [{"role": "user", "content": raw}]
    if isinstance(raw, list) and raw:
        for index, message in enumerate(raw):
            if not isinstance(message, dict):
                raise InvalidRequest(
                    f"Invalid type for 'input[{index}]': expected a message object.",
                    param=f"input[{index}]",
                    code="invalid_type",
                )
        return raw
    if raw is None:
        raise InvalidRequest(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    raise InvalidRequest(
        "Invalid 'input': expected a string or a non-empty array of messages.",
        param="input",
        code="invalid_value",
    )
