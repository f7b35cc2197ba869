"""Item shapes: OpenAI input items in, stored fields, OpenAI conversation items out.

Pure functions (no database). `parse_items` validates a whole batch before anything is
written and reports the first problem with its dotted `param` (`items[2].content[0].text`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from gateway.errors import InvalidRequest
from gateway.ids import public_id
from gateway.parsers import refuse_null_characters

ITEM_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}
MESSAGE_ROLES = ("user", "assistant", "system", "developer")
STATUSES = ("in_progress", "completed", "incomplete")
PART_TYPES = ("input_text", "output_text", "input_image", "input_file", "refusal")
IMAGE_DETAILS = ("low", "high", "auto", "original")
URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?#\[\]]|%[0-9A-Fa-f]{2})*")
# OpenAI's output_text annotations: type -> its required fields and their types.
ANNOTATION_FIELDS: dict[str, dict[str, type]] = {
    "file_citation": {"file_id": str, "index": int, "filename": str},
    "url_citation": {"url": str, "start_index": int, "end_index": int, "title": str},  # url: a URI
    "container_file_citation": {
        "container_id": str,
        "file_id": str,
        "start_index": int,
        "end_index": int,
        "filename": str,
    },
    "file_path": {"file_id": str, "index": int},
}
# OpenAI's `include[]` values; we always return what we store, so they only need to be valid.
INCLUDE_VALUES = (
    "web_search_call.results",
    "web_search_call.action.sources",
    "code_interpreter_call.outputs",
    "computer_call_output.output.image_url",
    "file_search_call.results",
    "message.input_image.image_url",
    "message.output_text.logprobs",
    "reasoning.encrypted_content",
)


@dataclass
class ItemSpec:
    """A validated item, ready to store."""

    type: str
    public_id: str
    role: str = ""
    status: str = "completed"
    content: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    # The id came from the caller (it may already be taken); ours are random and never are.
    given_id: bool = False


def new_item_id(item_type: str) -> str:
    return public_id(ITEM_PREFIX[item_type], 40)


def _bad(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _text(value: Any, param: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise _bad(f"Invalid type for '{param}': expected a string.", param, "invalid_type")
    limit = settings.CONVERSATIONS_MAX_TEXT_CHARS
    if len(value) > limit:
        raise _bad(
            f"Invalid '{param}': string too long. Expected a string with maximum length {limit}, "
            f"but got a string with length {len(value)} instead.",
            param,
            "string_above_max_length",
        )
    if not allow_empty and not value:
        raise _bad(f"Invalid '{param}': empty string.", param, "empty_string")
    return value


def _optional_text(part: dict[str, Any], key: str, param: str) -> str | None:
    value = part.get(key)
    return None if value is None else _text(value, f"{param}.{key}")


def _optional_uri(part: dict[str, Any], key: str, param: str) -> str | None:
    """An absolute URI (RFC 3986: a scheme, then URI characters only), as OpenAI's `format:
    uri` says: a URL, or a `data:` URL holding the file itself."""
    value = _optional_text(part, key, param)
    if value is not None and not URI.fullmatch(value):
        raise _bad(f"Invalid '{param}.{key}': expected a URL.", f"{param}.{key}", "invalid_url")
    return value


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"Invalid type for '{param}': expected an object.", param, "invalid_type")
    return value


def _list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(f"Invalid type for '{param}': expected an array.", param, "invalid_type")
    return value


def _is_integer(value: Any) -> bool:
    """JSON Schema's integer: a number with no fraction. orjson reads integers beyond 64 bits
    as floats, and 2.0 is an integer too."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _annotation(raw: Any, param: str) -> dict[str, Any]:
    annotation = _object(raw, param)
    kind = annotation.get("type")
    fields = ANNOTATION_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise _bad(
            f"Invalid value for '{param}.type': expected one of {', '.join(ANNOTATION_FIELDS)}.",
            f"{param}.type",
        )
    for name, kind in fields.items():
        value = annotation.get(name)
        if not (isinstance(value, str) if kind is str else _is_integer(value)):
            expected = "a string" if kind is str else "an integer"
            raise _bad(
                f"Invalid type for '{param}.{name}': expected {expected}.", f"{param}.{name}", "invalid_type"
            )
    if "url" in fields:
        _optional_uri(annotation, "url", param)
    return annotation


def _logprob(raw: Any, param: str, *, top: bool) -> dict[str, Any]:
    entry = _object(raw, param)
    token, logprob, token_bytes = entry.get("token"), entry.get("logprob"), entry.get("bytes")
    if not isinstance(token, str):
        raise _bad(f"Invalid type for '{param}.token': expected a string.", f"{param}.token", "invalid_type")
    if isinstance(logprob, bool) or not isinstance(logprob, int | float):
        raise _bad(
            f"Invalid type for '{param}.logprob': expected a number.", f"{param}.logprob", "invalid_type"
        )
    if not isinstance(token_bytes, list) or not all(_is_integer(b) for b in token_bytes):
        raise _bad(
            f"Invalid type for '{param}.bytes': expected an array of integers.",
            f"{param}.bytes",
            "invalid_type",
        )
    if top:
        alternatives = _list(entry.get("top_logprobs"), f"{param}.top_logprobs")
        for i, alternative in enumerate(alternatives):
            _logprob(alternative, f"{param}.top_logprobs[{i}]", top=False)
    return entry


def _part(raw: Any, param: str, role: str) -> dict[str, Any]:
    part = _object(raw, param)
    kind = part.get("type")
    if kind not in PART_TYPES:
        raise _bad(
            f"Invalid value for '{param}.type': expected one of {', '.join(PART_TYPES)}.", f"{param}.type"
        )
    if kind in ("output_text", "refusal") and role != "assistant":
        raise _bad(f"'{kind}' content is only valid in assistant messages.", f"{param}.type")
    if kind in ("input_image", "input_file") and role == "assistant":
        raise _bad(f"'{kind}' content is not valid in assistant messages.", f"{param}.type")
    if kind == "input_text":
        return {"type": "input_text", "text": _text(part.get("text"), f"{param}.text")}
    if kind == "output_text":
        annotations = _list(part.get("annotations", []), f"{param}.annotations")
        raw_logprobs = part.get("logprobs")
        logprobs = [] if raw_logprobs is None else _list(raw_logprobs, f"{param}.logprobs")
        return {
            "type": "output_text",
            "text": _text(part.get("text"), f"{param}.text"),
            "annotations": [_annotation(a, f"{param}.annotations[{i}]") for i, a in enumerate(annotations)],
            "logprobs": [_logprob(p, f"{param}.logprobs[{i}]", top=True) for i, p in enumerate(logprobs)],
        }
    if kind == "refusal":
        return {"type": "refusal", "refusal": _text(part.get("refusal"), f"{param}.refusal")}
    if kind == "input_image":
        detail = part.get("detail")
        detail = "auto" if detail is None else detail
        if detail not in IMAGE_DETAILS:
            raise _bad(f"Invalid value for '{param}.detail'.", f"{param}.detail")
        image_url = _optional_uri(part, "image_url", param)
        file_id = _optional_text(part, "file_id", param)
        if not image_url and not file_id:
            raise _bad("An input_image needs an image_url or a file_id.", f"{param}.image_url")
        return {"type": "input_image", "detail": detail, "image_url": image_url, "file_id": file_id}
    out: dict[str, Any] = {"type": "input_file"}
    for key in ("file_id", "file_data", "file_url", "filename"):
        value = (_optional_uri if key == "file_url" else _optional_text)(part, key, param)
        if value is not None:
            out[key] = value
    if len(out) == 1 or set(out) == {"type", "filename"}:
        raise _bad("An input_file needs a file_id, file_data or file_url.", f"{param}.file_id")
    return out


def _message(raw: dict[str, Any], param: str) -> ItemSpec:
    role = raw.get("role")
    if role not in MESSAGE_ROLES:
        raise _bad(
            f"Invalid value for '{param}.role': expected one of {', '.join(MESSAGE_ROLES)}.", f"{param}.role"
        )
    content = raw.get("content")
    if isinstance(content, str):
        text = _text(content, f"{param}.content")
        parts = [
            {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            if role == "assistant"
            else {"type": "input_text", "text": text}
        ]
    else:
        items = _list(content, f"{param}.content")
        parts = [_part(part, f"{param}.content[{i}]", role) for i, part in enumerate(items)]
    return ItemSpec(type="message", public_id="", role=role, content=parts)


def _function_call(raw: dict[str, Any], param: str) -> ItemSpec:
    data = {
        "call_id": _text(raw.get("call_id"), f"{param}.call_id", allow_empty=False),
        "name": _text(raw.get("name"), f"{param}.name", allow_empty=False),
        "arguments": _text(raw.get("arguments"), f"{param}.arguments"),
    }
    return ItemSpec(type="function_call", public_id="", data=data)


def _function_call_output(raw: dict[str, Any], param: str) -> ItemSpec:
    output = raw.get("output")
    if isinstance(output, list):
        parts = []
        for i, part in enumerate(output):
            part = _object(part, f"{param}.output[{i}]")
            if part.get("type") != "input_text":
                raise _bad(
                    "Only input_text parts are supported in a function call output.",
                    f"{param}.output[{i}].type",
                )
            parts.append({"type": "input_text", "text": _text(part.get("text"), f"{param}.output[{i}].text")})
        stored: str | list[dict[str, Any]] = parts
    else:
        stored = _text(output, f"{param}.output")
    data = {"call_id": _text(raw.get("call_id"), f"{param}.call_id", allow_empty=False), "output": stored}
    return ItemSpec(type="function_call_output", public_id="", data=data)


def _reasoning(raw: dict[str, Any], param: str) -> ItemSpec:
    summary = []
    for i, part in enumerate(_list(raw.get("summary", []), f"{param}.summary")):
        part = _object(part, f"{param}.summary[{i}]")
        if part.get("type") != "summary_text":
            raise _bad("Invalid value: expected 'summary_text'.", f"{param}.summary[{i}].type")
        summary.append(
            {"type": "summary_text", "text": _text(part.get("text"), f"{param}.summary[{i}].text")}
        )
    content = []
    raw_content = raw.get("content")
    for i, part in enumerate([] if raw_content is None else _list(raw_content, f"{param}.content")):
        part = _object(part, f"{param}.content[{i}]")
        if part.get("type") != "reasoning_text":
            raise _bad("Invalid value: expected 'reasoning_text'.", f"{param}.content[{i}].type")
        content.append(
            {"type": "reasoning_text", "text": _text(part.get("text"), f"{param}.content[{i}].text")}
        )
    data: dict[str, Any] = {"summary": summary, "content": content}
    encrypted = raw.get("encrypted_content")
    if encrypted is not None:
        data["encrypted_content"] = _text(encrypted, f"{param}.encrypted_content")
    return ItemSpec(type="reasoning", public_id="", data=data)


_PARSERS = {
    "message": _message,
    "function_call": _function_call,
    "function_call_output": _function_call_output,
    "reasoning": _reasoning,
}


def parse_item(raw: Any, param: str) -> ItemSpec:
    item = _object(raw, param)
    refuse_null_characters(item, param)
    kind = item.get("type", "message")  # EasyInputMessage: {"role", "content"} without a type
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise _bad(
            f"Invalid value for '{param}.type': expected one of {', '.join(_PARSERS)}.", f"{param}.type"
        )
    spec = parser(item, param)
    status = item.get("status")
    if status is not None:
        if status not in STATUSES:
            raise _bad(f"Invalid value for '{param}.status'.", f"{param}.status")
        spec.status = status
    # Keep an id the client (or the Responses API) gave the item, if it is one of ours.
    given = item.get("id")
    if given is not None and not isinstance(given, str):
        raise _bad(f"Invalid type for '{param}.id': expected a string.", f"{param}.id", "invalid_type")
    if isinstance(given, str) and given.startswith(ITEM_PREFIX[kind] + "_") and len(given) <= 64:
        spec.public_id = given
        spec.given_id = True
    return spec


def parse_items(raw: Any, *, param: str = "items", max_items: int | None = None) -> list[ItemSpec]:
    """Validate a batch of OpenAI input items; raises InvalidRequest for the first problem."""
    items = _list(raw, param)
    if max_items is not None and len(items) > max_items:
        raise _bad(
            f"Invalid '{param}': array too long. Expected an array with maximum length {max_items}, "
            f"but got an array with length {len(items)} instead.",
            param,
            "array_above_max_length",
        )
    return [parse_item(item, f"{param}[{index}]") for index, item in enumerate(items)]


def parse_metadata(raw: Any, param: str = "metadata") -> dict[str, str]:
    """OpenAI's metadata: up to 16 string pairs, keys ≤ 64 characters, values ≤ 512."""
    metadata = _object(raw, param)
    refuse_null_characters(metadata, param)
    if len(metadata) > 16:
        raise _bad(
            f"Invalid '{param}': too many properties (at most 16).", param, "object_above_max_properties"
        )
    for key, value in metadata.items():
        if len(key) > 64:
            raise _bad(f"Invalid '{param}': key '{key[:64]}…' is longer than 64 characters.", param)
        if not isinstance(value, str):
            raise _bad(
                f"Invalid type for '{param}.{key}': expected a string.", f"{param}.{key}", "invalid_type"
            )
        if len(value) > 512:
            raise _bad(
                f"Invalid '{param}.{key}': longer than 512 characters.",
                f"{param}.{key}",
                "string_above_max_length",
            )
    return dict(metadata)


def parse_title(raw: Any, param: str = "title") -> str:
    if not isinstance(raw, str):
        raise _bad(f"Invalid type for '{param}': expected a string.", param, "invalid_type")
    refuse_null_characters(raw, param)
    title = raw.strip()
    if len(title) > 256:
        raise _bad(f"Invalid '{param}': longer than 256 characters.", param, "string_above_max_length")
    return title


def parse_include(values: list[str]) -> list[str]:
    for value in values:
        if value not in INCLUDE_VALUES:
            raise _bad(f"Invalid value for 'include': '{value}'.", "include")
    return values


# --- Rendering ---------------------------------------------------------------------------


def render(
    *, public_id: str, type: str, role: str, status: str, content: list[dict[str, Any]], data: dict[str, Any]
) -> dict[str, Any]:
    """A stored item as OpenAI's ConversationItem."""
    if type == "message":
        return {"type": "message", "id": public_id, "status": status, "role": role, "content": content}
    if type == "function_call":
        return {"type": "function_call", "id": public_id, "status": status, **data}
    if type == "function_call_output":
        return {"type": "function_call_output", "id": public_id, "status": status, **data}
    out = {"type": "reasoning", "id": public_id, "status": status, "summary": data.get("summary", [])}
    if data.get("content"):
        out["content"] = data["content"]
    if data.get("encrypted_content") is not None:
        out["encrypted_content"] = data["encrypted_content"]
    return out
