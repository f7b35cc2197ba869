"""Which inference endpoints a model serves, and the checks of the non-chat request bodies.

A model server does not always serve every endpoint for every model: an embedding model has no
completions, a chat model usually no embeddings. Some upstreams say so in their `/v1/models`
entries (Ollama's and llama.cpp's `capabilities` list, Mistral's `capabilities` object, LM
Studio's `type`); for the others the operator lists them on the provider (`model_endpoints`:
model-id glob pattern → endpoints). A model nobody said anything about is assumed to serve them
all, and the model server itself answers for what it cannot do.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import orjson

from gateway import errors

CHAT = "chat.completions"
COMPLETIONS = "completions"
EMBEDDINGS = "embeddings"
ALL = (CHAT, COMPLETIONS, EMBEDDINGS)
UPSTREAM_PATH = {CHAT: "chat/completions", COMPLETIONS: "completions", EMBEDDINGS: "embeddings"}

_GENERATES = ("chat", "completion", "generat", "llm", "vlm", "text")
_EMBEDS = ("embed",)


def _words(entry: dict[str, Any]) -> list[str]:
    """The capability words an upstream's /v1/models entry carries, lower-cased."""
    words: list[str] = []
    capabilities = entry.get("capabilities")
    if isinstance(capabilities, list):
        words += [str(item).lower() for item in capabilities if isinstance(item, str)]
    elif isinstance(capabilities, dict):
        words += [str(name).lower() for name, on in capabilities.items() if on is True]
    kind = entry.get("type")
    if isinstance(kind, str) and kind != "model":
        words.append(kind.lower())
    return words


def learned_endpoints(entry: dict[str, Any]) -> list[str]:
    """The endpoints an upstream says a model serves; [] when it does not say."""
    words = _words(entry)
    served: list[str] = []
    if any(marker in word for word in words for marker in _GENERATES if "embed" not in word):
        served += [CHAT, COMPLETIONS]
    if any(marker in word for word in words for marker in _EMBEDS):
        served.append(EMBEDDINGS)
    return served


def effective_endpoints(model_id: str, learned: list[str], configured: dict[str, Any]) -> tuple[str, ...]:
    """What the registry routes: the upstream's word first, then the operator's, else all."""
    if learned:
        return tuple(endpoint for endpoint in ALL if endpoint in learned)
    for pattern, endpoints in configured.items():
        if fnmatch.fnmatchcase(model_id, pattern) and isinstance(endpoints, list):
            return tuple(endpoint for endpoint in ALL if endpoint in endpoints)
    return ALL


def validate_model_endpoints(value: Any) -> dict[str, list[str]]:
    """The operator's `model_endpoints`: {"<glob>": ["chat.completions" | "completions" | "embeddings"]}."""
    if not isinstance(value, dict):
        raise errors.InvalidRequest(
            "model_endpoints must be an object of model-id patterns to endpoint lists.",
            param="model_endpoints",
        )
    for pattern, endpoints in value.items():
        if not isinstance(pattern, str) or not pattern or len(pattern) > 300:
            raise errors.InvalidRequest("Each pattern must be a model id or glob.", param="model_endpoints")
        if not isinstance(endpoints, list) or any(endpoint not in ALL for endpoint in endpoints):
            raise errors.InvalidRequest(
                f"The endpoints of '{pattern}' must be a list drawn from {', '.join(ALL)}.",
                param=f"model_endpoints.{pattern}",
            )
    return {pattern: list(endpoints) for pattern, endpoints in value.items()}


def not_supported(model: str, endpoint: str) -> errors.InvalidRequest:
    what = {EMBEDDINGS: "embeddings", COMPLETIONS: "text completions", CHAT: "chat completions"}[endpoint]
    return errors.InvalidRequest(
        f"The model '{model}' does not support {what} (the /v1/{UPSTREAM_PATH[endpoint]} endpoint).",
        param="model",
        code="model_not_supported",
    )


# --- Request bodies --------------------------------------------------------------------------


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        raise errors.InvalidRequest(
            "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise errors.InvalidRequest(
            "you must provide a model parameter", param="model", code="missing_required_parameter"
        )
    return body


def _whole(value: Any) -> bool:
    """A number without a fraction (JSON Schema's integer): orjson reads integers beyond 64 bits
    as floats."""
    return type(value) is int or (type(value) is float and value.is_integer())


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_whole(item) and item >= 0 for item in value)


def _check_input(value: Any, param: str, *, allow_empty_string: bool) -> None:
    """A string, a list of strings, a list of token ids, or a list of token-id lists."""
    if isinstance(value, str):
        if not value and not allow_empty_string:
            raise errors.InvalidRequest(f"'{param}' must not be empty.", param=param, code="invalid_value")
        return
    if _is_tokens(value):
        return
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            if not allow_empty_string and any(not item for item in value):
                at = next(index for index, item in enumerate(value) if not item)
                raise errors.InvalidRequest(
                    f"'{param}[{at}]' must not be empty.", param=f"{param}.{at}", code="invalid_value"
                )
            return
        for index, item in enumerate(value):
            if not _is_tokens(item):
                raise errors.InvalidRequest(
                    f"'{param}' must be a string, an array of strings, an array of token ids or an "
                    f"array of token-id arrays; item {index} is none of these.",
                    param=f"{param}.{index}",
                    code="invalid_type",
                )
        return
    raise errors.InvalidRequest(
        f"'{param}' must be a non-empty string, array of strings, array of token ids or array of "
        "token-id arrays.",
        param=param,
        code="invalid_type",
    )


def parse_embeddings_request(raw: bytes) -> dict[str, Any]:
    body = parse_json_object(raw)
    if "input" not in body:
        raise errors.InvalidRequest(
            "you must provide an input parameter", param="input", code="missing_required_parameter"
        )
    _check_input(body["input"], "input", allow_empty_string=False)
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise errors.InvalidRequest(
            "encoding_format must be 'float' or 'base64'.", param="encoding_format", code="invalid_value"
        )
    dimensions = body.get("dimensions")
    if dimensions is not None and (not _whole(dimensions) or dimensions < 1):
        raise errors.InvalidRequest(
            "dimensions must be a positive integer.", param="dimensions", code="invalid_value"
        )
    return body


def parse_completions_request(raw: bytes) -> dict[str, Any]:
    body = parse_json_object(raw)
    if "prompt" not in body:
        raise errors.InvalidRequest(
            "you must provide a prompt parameter", param="prompt", code="missing_required_parameter"
        )
    _check_input(body["prompt"], "prompt", allow_empty_string=True)
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise errors.InvalidRequest("stream must be a boolean.", param="stream", code="invalid_type")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise errors.InvalidRequest(
            "stream_options must be an object.", param="stream_options", code="invalid_type"
        )
    logprobs = body.get("logprobs")
    if logprobs is not None and (not _whole(logprobs) or not 0 <= logprobs <= 5):
        raise errors.InvalidRequest(
            "logprobs must be an integer between 0 and 5.", param="logprobs", code="invalid_value"
        )
    for name in ("echo",):
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise errors.InvalidRequest(f"{name} must be a boolean.", param=name, code="invalid_type")
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise errors.InvalidRequest("suffix must be a string.", param="suffix", code="invalid_type")
    return body
