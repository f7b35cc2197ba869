"""Checks on a `POST /v1/responses` body, answered before anything is stored or sent upstream.

The body is a tagged union that DRF serializers express badly, so it is checked by hand here,
first problem only, with `param` as the dotted path (gateway.errors' convention). Ranges follow
jan-server §6.1 where OpenAI agrees (temperature 0..2, top_p 0..1, max_output_tokens >= 1, ...);
unknown keys are ignored, as OpenAI's open schema allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InvalidRequest
from gateway.parsers import refuse_null_characters
from inference.chat_validation import MAX_SCHEMA_DEPTH, nesting_exceeds

ROLES = ("user", "assistant", "system", "developer")
INPUT_PART_TYPES = ("input_text", "input_image", "input_file", "output_text", "refusal")
ITEM_TYPES = (
    "message",
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "reasoning",
    "web_search_call",
)
WEB_SEARCH_TOOL_TYPES = (
    "web_search",
    "web_search_2025_08_26",
    "web_search_preview",
    "web_search_preview_2025_03_11",
)
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
MAX_METADATA_PAIRS = 16
# A tool's parameter schema may nest as deep as the chat check allows, plus the levels around it.
MAX_BODY_DEPTH = MAX_SCHEMA_DEPTH + 8
# The functions the server-side web_search tool gives the model (responses.engine).
RESERVED_FUNCTION_NAMES = ("web_search", "open_page")
# Tool types of the spec that need a service only OpenAI runs (a vector store, a sandbox, a
# computer, an image model, a remote MCP client, or a model trained on that tool's own items).
HOSTED_TOOL_TYPES = (
    "file_search",
    "computer",
    "computer_use",
    "computer_use_preview",
    "code_interpreter",
    "image_generation",
    "mcp",
    "local_shell",
    "shell",
    "apply_patch",
    "tool_search",
    "programmatic_tool_calling",
)
# Chat Completions function names: ^[a-zA-Z0-9_-]{1,64}$.
CHAT_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
CHAT_NAME_MAX = 64


@dataclass
class CreateRequest:
    model: str
    input: list[dict[str, Any]]
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation_id: str | None = None
    store: bool = True
    stream: bool = False
    background: bool = False
    # Function and custom tools, namespace members included, each with the `chat_name` the
    # upstream knows it by; `tool_routes` maps that name back to what the client declared.
    function_tools: list[dict[str, Any]] = field(default_factory=list)
    tool_routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    web_search: dict[str, Any] | None = None  # the web_search tool as given, when asked for
    tools: list[dict[str, Any]] = field(default_factory=list)  # echoed as given (normalised)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_logprobs: int | None = None
    text_format: dict[str, Any] = field(default_factory=lambda: {"type": "text"})
    verbosity: str | None = None
    reasoning: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    truncation: str = "disabled"


def _bad(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{name} must be a number.", name, "invalid_type")
    if not low <= value <= high:
        raise _bad(f"{name} must be between {low:g} and {high:g}; got {value}.", name)
    return float(value)


def _integer(body: dict[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    # JSON Schema's integer: 2.0 is one (and orjson reads integers beyond 64 bits as floats).
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise _bad(f"{name} must be an integer.", name, "invalid_type")
    value = int(value)
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _bad(f"{name} must be {limit}; got {value}.", name)
    return value


def _boolean(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _bad(f"{name} must be a boolean.", name, "invalid_type")
    return value


def _optional_string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string.", name, "invalid_type")
    return value


def _content(content: Any, param: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad("content must be a string or an array of content parts.", param, "invalid_type")
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict) or part.get("type") not in INPUT_PART_TYPES:
            raise _bad(f"Each content part needs a type among {', '.join(INPUT_PART_TYPES)}.", where)
        if part["type"] in ("input_text", "output_text") and not isinstance(part.get("text"), str):
            raise _bad("A text part needs a string `text`.", f"{where}.text")
        if part["type"] == "input_image" and not (part.get("image_url") or part.get("file_id")):
            raise _bad("An input_image part needs an `image_url`.", f"{where}.image_url")


def _item(item: Any, param: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _bad("Each input item must be an object.", param, "invalid_type")
    kind = item.get("type")
    if kind is None:
        # The spec's ItemReferenceParam may leave out its type: an id alone names a stored item.
        kind = "item_reference" if "id" in item and "role" not in item else "message"
    if kind == "item_reference":
        if not isinstance(item.get("id"), str) or not item["id"]:
            raise _bad("An item_reference needs the `id` of a stored item.", f"{param}.id")
        return {"type": "item_reference", "id": item["id"]}
    if kind not in ITEM_TYPES:
        raise _bad(f"Unsupported input item type '{kind}'.", f"{param}.type")
    if kind == "message":
        if item.get("role") not in ROLES:
            raise _bad(f"role must be one of {', '.join(ROLES)}.", f"{param}.role")
        if "content" not in item:
            raise _bad("A message needs `content`.", f"{param}.content", "missing_required_parameter")
        _content(item["content"], f"{param}.content")
    elif kind == "function_call":
        for name in ("call_id", "name", "arguments"):
            if not isinstance(item.get(name), str) or (name != "arguments" and not item[name]):
                raise _bad(f"A function_call item needs a string `{name}`.", f"{param}.{name}")
        if item.get("namespace") is not None and not isinstance(item["namespace"], str):
            raise _bad("`namespace` must be a string.", f"{param}.namespace", "invalid_type")
    elif kind == "custom_tool_call":
        for name in ("call_id", "name", "input"):
            if not isinstance(item.get(name), str) or (name != "input" and not item[name]):
                raise _bad(f"A custom_tool_call item needs a string `{name}`.", f"{param}.{name}")
    elif kind in ("function_call_output", "custom_tool_call_output"):
        if not isinstance(item.get("call_id"), str) or not item["call_id"]:
            raise _bad(f"A {kind} item needs a `call_id`.", f"{param}.call_id")
        output = item.get("output")
        if not isinstance(output, str | list):
            raise _bad("`output` must be a string or an array of content parts.", f"{param}.output")
    return {**item, "type": kind}


def _input(body: dict[str, Any]) -> list[dict[str, Any]]:
    value = body.get("input")
    if value is None:
        raise _bad("you must provide an input parameter", "input", "missing_required_parameter")
    if isinstance(value, str):
        if not value:
            raise _bad("input must not be empty.", "input")
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise _bad("input must be a non-empty string or a non-empty array of items.", "input")
    return [_item(item, f"input[{index}]") for index, item in enumerate(value)]


def _chat_name(request: CreateRequest, name: str, namespace: str | None) -> str:
    """The function name the chat upstream sees: unique, within the chat API's name alphabet."""
    raw = f"{namespace}__{name}" if namespace else name
    base = CHAT_NAME_UNSAFE.sub("_", raw)[:CHAT_NAME_MAX] or "tool"
    chat_name, suffix = base, 1
    while chat_name in request.tool_routes or chat_name in RESERVED_FUNCTION_NAMES:
        suffix += 1
        tail = f"_{suffix}"
        chat_name = base[: CHAT_NAME_MAX - len(tail)] + tail
    return chat_name


def _callable_tool(
    tool: dict[str, Any],
    where: str,
    request: CreateRequest,
    seen: set[tuple[str | None, str]],
    namespace: str | None,
) -> None:
    """A function or custom tool (at the top level or inside a namespace), routed for the chat upstream."""
    kind = tool.get("type", "function")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"A {kind} tool needs a `name`.", f"{where}.name", "missing_required_parameter")
    if (namespace, name) in seen:
        raise _bad(f"Duplicate tool name '{name}'.", f"{where}.name", "duplicate_tool")
    seen.add((namespace, name))
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise _bad("`description` must be a string.", f"{where}.description", "invalid_type")
    if kind == "function":
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _bad("`parameters` must be a JSON schema object.", f"{where}.parameters")
        normalised: dict[str, Any] = {
            "type": "function",
            "name": name,
            "description": description,
            "parameters": parameters,
            "strict": tool.get("strict"),
        }
    else:
        fmt = tool.get("format")
        if fmt is not None:
            if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "grammar"):
                raise _bad("A custom tool's format.type must be text or grammar.", f"{where}.format.type")
            if fmt["type"] == "grammar" and not (
                fmt.get("syntax") in ("lark", "regex") and isinstance(fmt.get("definition"), str)
            ):
                raise _bad(
                    "A grammar format needs `syntax` (lark or regex) and a string `definition`.",
                    f"{where}.format",
                )
        normalised = {"type": "custom", "name": name, "description": description}
        if fmt is not None:
            normalised["format"] = dict(fmt)
    chat_name = _chat_name(request, name, namespace)
    request.tool_routes[chat_name] = {"type": kind, "name": name, "namespace": namespace}
    request.function_tools.append({**normalised, "chat_name": chat_name})
    if namespace is None:
        request.tools.append(normalised)


def _namespace(
    tool: dict[str, Any], where: str, request: CreateRequest, seen: set[tuple[str | None, str]]
) -> None:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise _bad("A namespace needs a `name`.", f"{where}.name", "missing_required_parameter")
    members = tool.get("tools")
    if not isinstance(members, list) or not members:
        raise _bad("A namespace needs a non-empty `tools` array.", f"{where}.tools")
    echoed = []
    for index, member in enumerate(members):
        member_where = f"{where}.tools[{index}]"
        if not isinstance(member, dict) or member.get("type", "function") not in ("function", "custom"):
            raise _bad("A namespace holds only function and custom tools.", f"{member_where}.type")
        _callable_tool(member, member_where, request, seen, name)
        echoed.append(dict(member))
    request.tools.append({**tool, "tools": echoed})


def _tools(body: dict[str, Any], request: CreateRequest) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _bad("tools must be an array.", "tools", "invalid_type")
    seen: set[tuple[str | None, str]] = set()
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise _bad("Each tool must be an object.", where, "invalid_type")
        kind = tool.get("type")
        if kind in ("function", "custom"):
            _callable_tool(tool, where, request, seen, None)
        elif kind == "namespace":
            _namespace(tool, where, request, seen)
        elif kind in WEB_SEARCH_TOOL_TYPES:
            if request.web_search is not None:
                raise _bad("Only one web_search tool may be given.", where, "duplicate_tool")
            access = tool.get("external_web_access", True)
            if not isinstance(access, bool):
                raise _bad(
                    "external_web_access must be a boolean.", f"{where}.external_web_access", "invalid_type"
                )
            request.web_search = dict(tool)
            request.tools.append(dict(tool))
        elif kind in HOSTED_TOOL_TYPES:
            raise _bad(
                f"The '{kind}' tool runs on OpenAI's own services, which this gateway does not provide; "
                "use function tools (or the web_search tool) instead.",
                f"{where}.type",
                "unsupported_tool",
            )
        else:
            raise _bad(f"Unsupported tool type '{kind}'.", f"{where}.type")
    clash = {name for namespace, name in seen if namespace is None} & set(RESERVED_FUNCTION_NAMES)
    if request.web_search is not None and clash:
        raise _bad(
            f"The function name '{clash.pop()}' is reserved by the web_search tool.",
            "tools",
            "duplicate_tool",
        )


def _named_tool(request: CreateRequest, kind: str, name: Any, param: str) -> str:
    """The chat name of the `kind` tool called `name` (the first one, namespaces included)."""
    for chat_name, route in request.tool_routes.items():
        if route["type"] == kind and route["name"] == name:
            return chat_name
    raise _bad(f"tool_choice names an unknown {kind} tool '{name}'.", param, "unknown_tool")


def _tool_choice(body: dict[str, Any], request: CreateRequest) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise _bad("tool_choice must be none, auto, required or a tool object.", "tool_choice")
    elif isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("function", "custom"):
            _named_tool(request, kind, choice.get("name"), "tool_choice.name")
        elif kind in WEB_SEARCH_TOOL_TYPES:
            if request.web_search is None:
                raise _bad(
                    "tool_choice asks for web search but no web_search tool is given.",
                    "tool_choice",
                    "unknown_tool",
                )
        elif kind == "allowed_tools":
            if choice.get("mode") not in ("auto", "required"):
                raise _bad("allowed_tools.mode must be auto or required.", "tool_choice.mode")
            allowed = choice.get("tools")
            if not isinstance(allowed, list) or not allowed:
                raise _bad("allowed_tools needs a non-empty `tools` array.", "tool_choice.tools")
            for index, entry in enumerate(allowed):
                if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
                    raise _bad(
                        "Each allowed tool must be an object with a type.", f"tool_choice.tools[{index}]"
                    )
        elif kind in HOSTED_TOOL_TYPES:
            raise _bad(
                f"The '{kind}' tool is not available on this gateway.", "tool_choice.type", "unsupported_tool"
            )
        else:
            raise _bad(f"Unsupported tool_choice type '{kind}'.", "tool_choice.type")
    else:
        raise _bad("tool_choice must be a string or an object.", "tool_choice", "invalid_type")
    request.tool_choice = choice


def _text(body: dict[str, Any], request: CreateRequest) -> None:
    text = body.get("text")
    if text is None:
        return
    if not isinstance(text, dict):
        raise _bad("text must be an object.", "text", "invalid_type")
    fmt = text.get("format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
            raise _bad("text.format.type must be text, json_object or json_schema.", "text.format.type")
        if fmt["type"] == "json_schema":
            if not isinstance(fmt.get("name"), str) or not fmt["name"]:
                raise _bad("A json_schema format needs a `name`.", "text.format.name")
            if not isinstance(fmt.get("schema"), dict):
                raise _bad("A json_schema format needs a `schema` object.", "text.format.schema")
        request.text_format = dict(fmt)
    verbosity = text.get("verbosity")
    if verbosity is not None:
        if verbosity not in ("low", "medium", "high"):
            raise _bad("text.verbosity must be low, medium or high.", "text.verbosity")
        request.verbosity = verbosity


def _metadata(body: dict[str, Any]) -> dict[str, str]:
    metadata = body.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise _bad("metadata must be an object of string values.", "metadata", "invalid_type")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise _bad(f"metadata may hold at most {MAX_METADATA_PAIRS} pairs.", "metadata")
    for key, value in metadata.items():
        if len(key) > 64:
            raise _bad("metadata keys may be at most 64 characters.", "metadata")
        if not isinstance(value, str) or len(value) > 512:
            raise _bad("metadata values must be strings of at most 512 characters.", f"metadata.{key}")
    return dict(metadata)


def _conversation(body: dict[str, Any]) -> str | None:
    value = body.get("conversation")
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        raise _bad('conversation must be a conversation id or {"id": ...}.', "conversation")
    return value


def parse_create(body: Any) -> CreateRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    if nesting_exceeds(body, MAX_BODY_DEPTH):
        # The body is copied, stored and translated by recursive code; no real request is this deep.
        raise InvalidRequest(
            f"The request body is nested deeper than {MAX_BODY_DEPTH} levels.", code="invalid_json"
        )
    refuse_null_characters(body)  # the request is stored (and its items may join a conversation)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("you must provide a model parameter", "model", "missing_required_parameter")
    request = CreateRequest(model=model, input=_input(body))
    request.instructions = _optional_string(body, "instructions")
    request.previous_response_id = _optional_string(body, "previous_response_id") or None
    request.conversation_id = _conversation(body)
    if request.previous_response_id and request.conversation_id:
        raise _bad("previous_response_id cannot be used together with conversation.", "conversation")
    request.store = _boolean(body, "store", True)
    request.stream = _boolean(body, "stream", False)
    request.background = _boolean(body, "background", False)
    if request.background and not request.store:
        raise _bad("background responses must be stored: background requires store=true.", "background")
    if request.conversation_id and not request.store:
        raise _bad("A response added to a conversation must be stored (store=true).", "store")
    _tools(body, request)
    _tool_choice(body, request)
    request.parallel_tool_calls = _boolean(body, "parallel_tool_calls", True)
    request.max_output_tokens = _integer(body, "max_output_tokens", 1)
    request.max_tool_calls = _integer(body, "max_tool_calls", 1)
    request.temperature = _number(body, "temperature", 0, 2)
    request.top_p = _number(body, "top_p", 0, 1)
    request.top_logprobs = _integer(body, "top_logprobs", 0, 20)
    _text(body, request)
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise _bad("reasoning must be an object.", "reasoning", "invalid_type")
        effort = reasoning.get("effort")
        if effort is not None and effort not in REASONING_EFFORTS:
            raise _bad(f"reasoning.effort must be one of {', '.join(REASONING_EFFORTS)}.", "reasoning.effort")
        summary = reasoning.get("summary")
        if summary is not None and summary not in ("auto", "concise", "detailed"):
            raise _bad("reasoning.summary must be auto, concise or detailed.", "reasoning.summary")
        request.reasoning = {"effort": effort, "summary": summary}
    request.metadata = _metadata(body)
    request.user = _optional_string(body, "user") or _optional_string(body, "safety_identifier")
    truncation = body.get("truncation")
    if truncation is not None:
        if truncation not in ("auto", "disabled"):
            raise _bad("truncation must be auto or disabled.", "truncation")
        request.truncation = truncation
    return request
