"""The structure of a chat completion request, checked before it is forwarded.

A lenient upstream would take `{"role": "wizard"}` or `"tool_choice": "sometimes"` and answer;
OpenAI answers 400 with the offending `param`, and clients (and their tests) rely on that. So
the fields OpenAI defines are checked here: message roles and the content part types each role
may send, tool and tool_choice shapes, the types and ranges of known numeric fields. Fields we
do not know are left alone and forwarded unchanged (upstreams have their own extensions).

This runs on the hot path for every request: plain loops over what the body holds, no schema
library, no copies; the first problem found is the one reported, as OpenAI does. The messages
(and their tool calls) are walked once; free-form values (tool parameter schemas, response
format schemas) only for their nesting depth.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import InvalidRequest

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# What each role may put in a content array. OpenAI's types, plus vLLM's audio_url/video_url for
# self-hosted multimodal models (an OpenAI upstream refuses those itself).
USER_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "audio_url", "video_url"})
TEXT_PART_TYPES = frozenset({"text"})
ASSISTANT_PART_TYPES = frozenset({"text", "refusal"})
PART_TYPES = {
    "system": TEXT_PART_TYPES,
    "developer": TEXT_PART_TYPES,
    "user": USER_PART_TYPES,
    "assistant": ASSISTANT_PART_TYPES,
    "tool": TEXT_PART_TYPES,
    "function": TEXT_PART_TYPES,
}
TOOL_CHOICE_MODES = ("none", "auto", "required")
RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Deeper tool parameter or response schemas than this are refused: no model needs them, and
# walking them recursively (ours or an upstream's) could exhaust the stack.
MAX_SCHEMA_DEPTH = 64

# name → (low, high, integer?) for the numeric fields OpenAI defines, with OpenAI's bounds.
NUMBERS: dict[str, tuple[float | None, float | None, bool]] = {
    "temperature": (0, 2, False),
    "top_p": (0, 1, False),
    "presence_penalty": (-2, 2, False),
    "frequency_penalty": (-2, 2, False),
    "n": (1, 128, True),
    "max_tokens": (1, None, True),
    "max_completion_tokens": (1, None, True),
    "top_logprobs": (0, 20, True),
    "seed": (None, None, True),
}
BOOLEANS = ("logprobs", "parallel_tool_calls", "store")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _wrong_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _invalid_value(param: str, value: Any, allowed: tuple[str, ...] | frozenset[str]) -> InvalidRequest:
    listed = ", ".join(f"'{name}'" for name in sorted(allowed) if isinstance(name, str))
    return InvalidRequest(
        f"Invalid value: '{value}'. Supported values are: {listed}.", param=param, code="invalid_value"
    )


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests arrays/objects deeper than `limit` (no recursion)."""
    level: list[Any] = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for current in level:
            children = current.values() if type(current) is dict else current
            below += [child for child in children if type(child) is dict or type(child) is list]
        level = below
    return False


def _schema(value: Any, param: str) -> None:
    if not isinstance(value, dict):
        raise _wrong_type(param, "an object", value)
    if nesting_exceeds(value, MAX_SCHEMA_DEPTH):
        raise InvalidRequest(
            f"Invalid '{param}': nested deeper than {MAX_SCHEMA_DEPTH} levels.",
            param=param,
            code="invalid_value",
        )


def _content(content: Any, role: str, param: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _wrong_type(param, "one of a string or array of objects", content)
    allowed = PART_TYPES[role]
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise _wrong_type(where, "an object", part)
        kind = part.get("type")
        if not isinstance(kind, str) or kind not in allowed:
            if kind is None:
                raise _missing(f"{where}.type")
            raise _invalid_value(f"{where}.type", kind, allowed)
        if kind == "text" and not isinstance(part.get("text"), str):
            raise _wrong_type(f"{where}.text", "a string", part.get("text"))
        elif kind == "refusal" and not isinstance(part.get("refusal"), str):
            raise _wrong_type(f"{where}.refusal", "a string", part.get("refusal"))
        elif kind in ("input_audio", "file") and not isinstance(part.get(kind), dict):
            raise _wrong_type(f"{where}.{kind}", "an object", part.get(kind))
        elif kind in ("image_url", "audio_url", "video_url") and not isinstance(part.get(kind), dict | str):
            # a bare URL string is vLLM's dialect; OpenAI's is {"url": ...}
            raise _wrong_type(f"{where}.{kind}", "an object", part.get(kind))


def _tool_call(call: Any, param: str) -> None:
    if not isinstance(call, dict):
        raise _wrong_type(param, "an object", call)
    kind = call.get("type", "function")
    if kind == "function":
        function = call.get("function")
        if not isinstance(function, dict):
            raise _wrong_type(f"{param}.function", "an object", function)
        if not isinstance(function.get("name"), str):
            raise _wrong_type(f"{param}.function.name", "a string", function.get("name"))
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            raise _wrong_type(f"{param}.function.arguments", "a string", arguments)
    elif kind == "custom":
        if not isinstance(call.get("custom"), dict):
            raise _wrong_type(f"{param}.custom", "an object", call.get("custom"))
    else:
        raise _invalid_value(f"{param}.type", kind, ("function", "custom"))
    if not isinstance(call.get("id"), str):
        raise _wrong_type(f"{param}.id", "a string", call.get("id"))


def _message(message: Any, param: str) -> None:
    if not isinstance(message, dict):
        raise _wrong_type(param, "an object", message)
    role = message.get("role")
    if not isinstance(role, str) or role not in PART_TYPES:
        if role is None:
            raise _missing(f"{param}.role")
        raise _invalid_value(f"{param}.role", role, ROLES)
    content = message.get("content")
    if role == "assistant":
        if content is not None:
            _content(content, role, f"{param}.content")
        tool_calls = message.get("tool_calls")
        if tool_calls is not None:
            if not isinstance(tool_calls, list):
                raise _wrong_type(f"{param}.tool_calls", "an array", tool_calls)
            for index, call in enumerate(tool_calls):
                _tool_call(call, f"{param}.tool_calls[{index}]")
        return
    if "content" not in message:
        raise _missing(f"{param}.content")
    if content is not None or role != "function":  # the deprecated function message may hold null
        _content(content, role, f"{param}.content")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        if message.get("tool_call_id") is None:
            raise _missing(f"{param}.tool_call_id")
        raise _wrong_type(f"{param}.tool_call_id", "a string", message.get("tool_call_id"))
    if role == "function" and not isinstance(message.get("name"), str):
        raise _missing(f"{param}.name")


def _tool(tool: Any, param: str) -> None:
    if not isinstance(tool, dict):
        raise _wrong_type(param, "an object", tool)
    kind = tool.get("type")
    if kind == "function":
        function = tool.get("function")
        if not isinstance(function, dict):
            if function is None:
                raise _missing(f"{param}.function")
            raise _wrong_type(f"{param}.function", "an object", function)
        name = function.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            if name is None:
                raise _missing(f"{param}.function.name")
            raise InvalidRequest(
                f"Invalid '{param}.function.name': string does not match pattern. Expected a string "
                "that matches the pattern '^[a-zA-Z0-9_-]+$' of at most 64 characters.",
                param=f"{param}.function.name",
                code="invalid_value",
            )
        if function.get("parameters") is not None:
            _schema(function["parameters"], f"{param}.function.parameters")
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise _wrong_type(f"{param}.function.description", "a string", description)
    elif kind == "custom":
        custom = tool.get("custom")
        if not isinstance(custom, dict) or not isinstance(custom.get("name"), str):
            raise _missing(f"{param}.custom.name")
    elif kind is None:
        raise _missing(f"{param}.type")
    else:
        raise _invalid_value(f"{param}.type", kind, ("function", "custom"))


def _tool_choice(choice: Any) -> None:
    if isinstance(choice, str):
        if choice not in TOOL_CHOICE_MODES:
            raise _invalid_value("tool_choice", choice, TOOL_CHOICE_MODES)
        return
    if not isinstance(choice, dict):
        raise _wrong_type("tool_choice", "one of a string or object", choice)
    kind = choice.get("type")
    if kind == "function":
        function = choice.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _missing("tool_choice.function.name")
    elif kind == "custom":
        custom = choice.get("custom")
        if not isinstance(custom, dict) or not isinstance(custom.get("name"), str):
            raise _missing("tool_choice.custom.name")
    elif kind == "allowed_tools":
        allowed = choice.get("allowed_tools")
        if not isinstance(allowed, dict):
            raise _wrong_type("tool_choice.allowed_tools", "an object", allowed)
        if allowed.get("mode") not in ("auto", "required"):
            raise _invalid_value("tool_choice.allowed_tools.mode", allowed.get("mode"), ("auto", "required"))
        if not isinstance(allowed.get("tools"), list):
            raise _wrong_type("tool_choice.allowed_tools.tools", "an array", allowed.get("tools"))
    else:
        raise _invalid_value("tool_choice.type", kind, ("function", "custom", "allowed_tools"))


def _number(body: dict[str, Any], name: str, low: float | None, high: float | None, integer: bool) -> None:
    value = body[name]
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        # JSON Schema's integer: 2.0 is one (and orjson reads integers beyond 64 bits as floats)
        or (integer and isinstance(value, float) and not value.is_integer())
    ):
        raise _wrong_type(name, "an integer" if integer else "a number", value)
    kind = "integer" if integer else "decimal"
    if low is not None and value < low:
        raise InvalidRequest(
            f"Invalid '{name}': {kind} below minimum value. Expected a value >= {low:g}, but got {value} instead.",
            param=name,
            code=f"{kind}_below_min_value",
        )
    if high is not None and value > high:
        raise InvalidRequest(
            f"Invalid '{name}': {kind} above maximum value. Expected a value <= {high:g}, but got {value} instead.",
            param=name,
            code=f"{kind}_above_max_value",
        )


def _stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(entry, str) for entry in stop):
        raise _wrong_type("stop", "one of a string or array of strings", stop)


def _response_format(fmt: Any) -> None:
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise _wrong_type("response_format", "an object", fmt)
    kind = fmt.get("type")
    if kind not in RESPONSE_FORMAT_TYPES:
        raise _invalid_value("response_format.type", kind, RESPONSE_FORMAT_TYPES)
    if kind == "json_schema":
        schema = fmt.get("json_schema")
        if not isinstance(schema, dict):
            raise _missing("response_format.json_schema")
        if not isinstance(schema.get("name"), str):
            raise _missing("response_format.json_schema.name")
        if schema.get("schema") is not None:
            _schema(schema["schema"], "response_format.json_schema.schema")


def check_chat_request(body: dict[str, Any]) -> None:
    """Raise InvalidRequest (with `param`) for the first structural problem of a chat body.

    `model` and the presence of `messages` are checked by the caller; unknown keys pass.
    """
    messages = body.get("messages")
    if isinstance(messages, list):
        for index, message in enumerate(messages):
            _message(message, f"messages[{index}]")
    for name, (low, high, integer) in NUMBERS.items():
        if name in body:
            _number(body, name, low, high, integer)
    for name in BOOLEANS:
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            raise _wrong_type(name, "a boolean", value)
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _wrong_type("tools", "an array", tools)
        for index, tool in enumerate(tools):
            _tool(tool, f"tools[{index}]")
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"])
    if "stop" in body:
        _stop(body["stop"])
    if "response_format" in body:
        _response_format(body["response_format"])
    logit_bias = body.get("logit_bias")
    if logit_bias is not None:
        if not isinstance(logit_bias, dict):
            raise _wrong_type("logit_bias", "an object", logit_bias)
        for token, bias in logit_bias.items():
            if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
                raise InvalidRequest(
                    f"Invalid 'logit_bias': the bias of token {token} must be a number between -100 and 100.",
                    param="logit_bias",
                    code="invalid_value",
                )
