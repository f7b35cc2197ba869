"""Responses ↔ Chat Completions: items to messages, tools to chat tools, usage back.

Every model call goes through inference.chat, so a Responses request becomes a chat completion
body here and the chat answer becomes Response output items in responses.engine.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.ids import public_id
from responses.validation import CHAT_NAME_MAX, CHAT_NAME_UNSAFE, CreateRequest

# Item id prefixes, one per item type.
MESSAGE, FUNCTION_CALL, FUNCTION_OUTPUT, REASONING, WEB_SEARCH = "msg", "fc", "fco", "rs", "ws"
CUSTOM_CALL, CUSTOM_OUTPUT = "ctc", "ctco"
# Tool items as stored: their id prefix and the fields kept from the input, in output order.
_TOOL_ITEMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "function_call": (FUNCTION_CALL, ("call_id", "name", "arguments")),
    "function_call_output": (FUNCTION_OUTPUT, ("call_id", "output")),
    "custom_tool_call": (CUSTOM_CALL, ("call_id", "name", "input")),
    "custom_tool_call_output": (CUSTOM_OUTPUT, ("call_id", "output")),
}
# A custom tool takes free text; a chat upstream only knows JSON-argument functions, so the text
# travels as this one string argument.
CUSTOM_INPUT_ARGUMENT = "input"


def new_id(prefix: str) -> str:
    return public_id(prefix, 32)


def _text_part(part_type: str, text: str) -> dict[str, Any]:
    if part_type == "output_text":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": part_type, "text": text}


def normalise_item(item: dict[str, Any]) -> dict[str, Any]:
    """An input item in its stored (ItemResource) shape: an id, a status, typed content parts."""
    kind = item["type"]
    if kind == "message":
        role = item["role"]
        assistant = role == "assistant"
        content = item["content"]
        if isinstance(content, str):
            parts = [_text_part("output_text" if assistant else "input_text", content)]
        else:
            parts = []
            for part in content:
                if part["type"] == "output_text":
                    parts.append({"annotations": [], "logprobs": [], **part})
                elif part["type"] == "input_text" and assistant:
                    parts.append(_text_part("output_text", part["text"]))
                else:
                    parts.append(dict(part))
        return {
            "id": item.get("id") or new_id(MESSAGE),
            "type": "message",
            "role": role,
            "status": "completed",
            "content": parts,
        }
    if kind in _TOOL_ITEMS:
        prefix, fields = _TOOL_ITEMS[kind]
        stored = {
            "id": item.get("id") or new_id(prefix),
            "type": kind,
            **{name: item[name] for name in fields},
        }
        stored["status"] = "completed"
        if item.get("namespace") and kind.endswith("_call"):
            stored["namespace"] = item["namespace"]
        return stored
    return {**item, "id": item.get("id") or new_id(REASONING if kind == "reasoning" else WEB_SEARCH)}


def _chat_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Plain text when every part is text (what every upstream accepts), parts otherwise."""
    texts = [p.get("text", "") for p in parts if p["type"] in ("input_text", "output_text")]
    if len(texts) == len(parts):
        return "".join(texts) if len(texts) <= 1 else "\n".join(texts)
    out: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] in ("input_text", "output_text"):
            out.append({"type": "text", "text": part.get("text", "")})
        elif part["type"] == "input_image":
            image: dict[str, Any] = {"url": part.get("image_url") or part.get("file_id")}
            if part.get("detail"):
                image["detail"] = part["detail"]
            out.append({"type": "image_url", "image_url": image})
        elif part["type"] == "input_file":
            out.append({"type": "file", "file": {k: v for k, v in part.items() if k != "type"}})
        elif part["type"] == "refusal":
            out.append({"type": "text", "text": part.get("refusal", "")})
    return out


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return "\n".join(p.get("text", "") for p in output if isinstance(p, dict))


def chat_function_name(name: str, namespace: str | None, routes: dict[str, dict[str, Any]]) -> str:
    """The chat name of a declared tool; a namespaced call from history whose namespace this
    request no longer declares keeps the same joined shape the declaration would have had."""
    for chat_name, route in routes.items():
        if route["name"] == name and route.get("namespace") == namespace:
            return chat_name
    return CHAT_NAME_UNSAFE.sub("_", f"{namespace}__{name}" if namespace else name)[:CHAT_NAME_MAX]


def _assistant_call(messages: list[dict[str, Any]], call: dict[str, Any]) -> None:
    last = messages[-1] if messages else None
    if last and last["role"] == "assistant" and last.get("tool_calls") is not None:
        last["tool_calls"].append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def items_to_messages(
    items: list[dict[str, Any]], routes: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Stored items (history and input) as chat messages.

    Consecutive function_call items become one assistant message with several tool_calls, the
    shape chat models produced them in. Reasoning and web_search_call items are not replayed:
    the upstream cannot take them back, and the answer that followed already holds their gist.
    Custom tool calls travel as calls of the function that stands in for the custom tool.
    """
    routes = routes or {}
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": _chat_content(item["content"])})
        elif kind == "function_call":
            name = chat_function_name(item["name"], item.get("namespace"), routes)
            function = {"name": name, "arguments": item["arguments"]}
            _assistant_call(messages, {"id": item["call_id"], "type": "function", "function": function})
        elif kind == "custom_tool_call":
            name = chat_function_name(item["name"], item.get("namespace"), routes)
            arguments = orjson.dumps({CUSTOM_INPUT_ARGUMENT: item["input"]}).decode()
            function = {"name": name, "arguments": arguments}
            _assistant_call(messages, {"id": item["call_id"], "type": "function", "function": function})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": _output_text(item["output"])}
            )
    return messages


def _custom_description(tool: dict[str, Any]) -> str:
    """What the model needs to know to write a custom tool's free-form input."""
    lines = [tool.get("description") or f"The {tool['name']} tool."]
    fmt = tool.get("format") or {}
    if fmt.get("type") == "grammar":
        lines.append(
            f"Its `{CUSTOM_INPUT_ARGUMENT}` must match this {fmt['syntax']} grammar:\n{fmt['definition']}"
        )
    return "\n".join(lines)


def _chat_function(tool: dict[str, Any]) -> dict[str, Any]:
    if tool["type"] == "custom":
        return {
            "name": tool["chat_name"],
            "description": _custom_description(tool),
            "parameters": {
                "type": "object",
                "properties": {CUSTOM_INPUT_ARGUMENT: {"type": "string", "description": "The tool's input."}},
                "required": [CUSTOM_INPUT_ARGUMENT],
            },
        }
    return {
        key: value
        for key, value in (
            ("name", tool.get("chat_name") or tool["name"]),
            ("description", tool.get("description")),
            ("parameters", tool.get("parameters") or {"type": "object", "properties": {}}),
            ("strict", tool.get("strict")),
        )
        if value is not None
    }


def _allowed_chat_names(request: CreateRequest, allowed: list[dict[str, Any]]) -> set[str]:
    """The chat names of the tools an allowed_tools choice lists (a namespace allows all of its own)."""
    names: set[str] = set()
    for entry in allowed:
        for chat_name, route in request.tool_routes.items():
            same_tool = entry.get("type") == route["type"] and entry.get("name") == route["name"]
            whole_namespace = entry.get("type") == "namespace" and entry.get("name") == route.get("namespace")
            if same_tool or whole_namespace:
                names.add(chat_name)
    return names


def chat_tools(request: CreateRequest, extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tools = [{"type": "function", "function": _chat_function(tool)} for tool in request.function_tools]
    return tools + extra


def chat_tool_choice(request: CreateRequest, choice: Any, web_tool_names: list[str]) -> Any:
    if isinstance(choice, str):
        return choice
    kind = choice.get("type")
    if kind in ("function", "custom"):
        for chat_name, route in request.tool_routes.items():
            if route["type"] == kind and route["name"] == choice.get("name"):
                return {"type": "function", "function": {"name": chat_name}}
        return "auto"
    if kind == "allowed_tools":
        return choice["mode"]
    # a hosted web_search choice: make the model call our search function
    return {"type": "function", "function": {"name": web_tool_names[0]}} if web_tool_names else "auto"


def chat_body(
    request: CreateRequest,
    messages: list[dict[str, Any]],
    *,
    extra_tools: list[dict[str, Any]],
    tool_choice: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    tools = chat_tools(request, extra_tools)
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "allowed_tools":
        # Chat upstreams rarely know allowed_tools: offer only the allowed ones instead.
        allowed = _allowed_chat_names(request, tool_choice["tools"]) | {
            t["function"]["name"] for t in extra_tools
        }
        tools = [tool for tool in tools if tool["function"]["name"] in allowed]
    if tools:
        body["tools"] = tools
        web_names = [t["function"]["name"] for t in extra_tools]
        body["tool_choice"] = chat_tool_choice(request, tool_choice, web_names)
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.max_output_tokens is not None:
        body["max_tokens"] = request.max_output_tokens
    for name in ("temperature", "top_p", "user"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.top_logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = request.top_logprobs
    fmt = request.text_format
    if fmt["type"] == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif fmt["type"] == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "description", "strict") if fmt.get(k) is not None}
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    if request.reasoning and request.reasoning.get("effort"):
        body["reasoning_effort"] = request.reasoning["effort"]
    if request.verbosity:
        body["verbosity"] = request.verbosity
    return body


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def add_usage(total: dict[str, Any] | None, chat_usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chat usage (prompt/completion tokens) folded into Responses usage, summed over rounds."""
    if not isinstance(chat_usage, dict):
        return total
    total = total or {
        "input_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 0,
    }
    prompt_details = chat_usage.get("prompt_tokens_details") or {}
    completion_details = chat_usage.get("completion_tokens_details") or {}
    total["input_tokens"] += _int(chat_usage.get("prompt_tokens"))
    total["input_tokens_details"]["cached_tokens"] += _int(prompt_details.get("cached_tokens"))
    total["output_tokens"] += _int(chat_usage.get("completion_tokens"))
    total["output_tokens_details"]["reasoning_tokens"] += _int(completion_details.get("reasoning_tokens"))
    total["total_tokens"] = total["input_tokens"] + total["output_tokens"]
    return total
