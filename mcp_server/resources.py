"""Conversations and stored responses as MCP resources: reads through the owning apps' selectors.

Sync functions (they touch the ORM); the MCP handlers call them through
`gateway.background.run_sync`. Isolation is the selectors' job: another project's conversation
raises `gateway.errors.NotFound` there, exactly as it does for the REST API.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps

from accounts.auth import Principal
from conversations import selectors as conversation_selectors
from responses import selectors as response_selectors

CONVERSATION_SCHEME = "conversation"
RESPONSE_SCHEME = "response"


# The MCP server sits above both apps, so it imports their selectors plainly; a deployment may
# still leave either app out of INSTALLED_APPS, and then its resources are not offered.
def conversations_available() -> bool:
    return apps.is_installed("conversations")


def responses_available() -> bool:
    return apps.is_installed("responses")


def parse_uri(uri: str) -> tuple[str, str] | None:
    """("conversation", "conv_…") for `conversation://conv_…`; None for anything else."""
    parts = urlsplit(uri)
    if parts.netloc and parts.path not in ("", "/"):
        return None  # conversation://conv_x/more names nothing
    identifier = parts.netloc or parts.path.lstrip("/")
    if parts.scheme not in (CONVERSATION_SCHEME, RESPONSE_SCHEME) or not identifier or "/" in identifier:
        return None
    if parts.query or parts.fragment:
        return None
    return parts.scheme, identifier


def conversation_uri(conversation_id: str) -> str:
    return f"{CONVERSATION_SCHEME}://{conversation_id}"


def recent_conversations(principal: Principal, *, limit: int) -> list[dict[str, Any]]:
    return [
        conversation_selectors.conversation_object(conversation)
        for conversation in conversation_selectors.conversation_list(principal, limit=limit)
    ]


def conversation_read(
    principal: Principal, conversation_id: str, *, max_items: int
) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """(conversation object, its newest `max_items` items oldest first, whether older ones were
    left out). Raises NotFound when the conversation is not the caller's."""
    conversation = conversation_selectors.conversation_get(principal, conversation_id)
    items = conversation_selectors.item_recent(conversation, limit=max_items + 1)
    truncated = len(items) > max_items
    if truncated:
        items = items[1:]
    return (
        conversation_selectors.conversation_object(conversation),
        [conversation_selectors.item_object(item) for item in items],
        truncated,
    )


def conversation_check(principal: Principal, conversation_id: str) -> None:
    """Raises NotFound unless the caller may read the conversation."""
    conversation_selectors.conversation_get(principal, conversation_id)


def response_read(principal: Principal, response_id: str) -> dict[str, Any]:
    return dict(response_selectors.response_object(response_selectors.response_get(principal, response_id)))


# --- Rendering ---------------------------------------------------------------------------------


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return ""
    kind = part.get("type", "")
    if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
        return str(part.get("text", ""))
    if kind == "refusal":
        return f"[refusal] {part.get('refusal', '')}"
    if kind == "input_image":
        return "[image]"
    if kind == "input_file":
        return f"[file: {part.get('filename') or part.get('file_id') or 'attachment'}]"
    return f"[{kind or 'content'}]"


def _item_markdown(item: dict[str, Any]) -> str:
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content")
        parts = content if isinstance(content, list) else [content]
        text = "\n\n".join(t for t in (_part_text(p) for p in parts) if t)
        return f"### {item.get('role', 'unknown')}\n\n{text}".rstrip()
    if kind == "function_call":
        return f"### tool call: `{item.get('name', '')}`\n\n```json\n{item.get('arguments', '')}\n```"
    if kind == "function_call_output":
        return f"### tool result ({item.get('call_id', '')})\n\n{item.get('output', '')}"
    if kind == "reasoning":
        summary = "\n\n".join(_part_text(p) for p in item.get("summary") or [])
        return f"### reasoning\n\n{summary}".rstrip()
    return f"### {kind}\n\n```json\n{json.dumps(item, ensure_ascii=False, default=str)}\n```"


def conversation_title(conversation: dict[str, Any]) -> str | None:
    """jan's `title`, else a `title` the client kept in OpenAI's metadata."""
    metadata = conversation.get("metadata") or {}
    title = conversation.get("title") or (metadata.get("title") if isinstance(metadata, dict) else None)
    return str(title) if title else None


def transcript_markdown(
    conversation: dict[str, Any], items: list[dict[str, Any]], *, truncated: bool = False
) -> str:
    title = conversation_title(conversation)
    lines = [f"# Conversation {conversation.get('id', '')}" + (f": {title}" if title else "")]
    if conversation.get("created_at") is not None:
        lines.append(f"Created at (Unix): {conversation['created_at']}")
    count = f"the last {len(items)} (older items left out)" if truncated else str(len(items))
    lines.append(f"Items: {count}")
    body = [_item_markdown(item) for item in items] or ["(no items yet)"]
    return "\n".join(lines) + "\n\n" + "\n\n".join(body) + "\n"


def response_markdown(response: dict[str, Any]) -> str:
    lines = [
        f"# Response {response.get('id', '')}",
        f"Model: {response.get('model', '')}",
        f"Status: {response.get('status', '')}",
    ]
    output = response.get("output") or []
    body = [_item_markdown(item) for item in output if isinstance(item, dict)] or ["(no output)"]
    return "\n".join(lines) + "\n\n" + "\n\n".join(body) + "\n"
