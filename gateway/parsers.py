"""The JSON parser of every DRF route: orjson, the parser of the hot path.

The standard library's `json` recurses once per nesting level, so a body of 100,000 `[` raised
RecursionError (a 500) from DRF's JSONParser. orjson refuses documents nested deeper than 1,024
levels with a plain decode error, which becomes the usual 400 `invalid_json` envelope. It also
refuses NaN and Infinity, as DRF's strict JSON mode does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import orjson
from django.http import HttpRequest
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from gateway import errors


class BoundedJSONParser(JSONParser):
    """REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]: JSON bodies, bounded depth, one error shape."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            return orjson.loads(stream.read())
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


def refuse_null_characters(value: Any, param: str | None = None) -> None:
    """A 400 for U+0000 in any string or key of `value`, a decoded body that is to be stored.

    JSON allows the character; PostgreSQL's text and jsonb cannot hold it, so storing it failed
    with a 500. DRF's CharField refuses it the same way for the administration API.
    """
    pending: list[tuple[Any, str | None]] = [(value, param)]
    while pending:
        current, where = pending.pop()
        if isinstance(current, str):
            if "\x00" in current:
                raise errors.InvalidRequest(
                    f"Invalid '{where}': the NUL character (\\u0000) is not allowed."
                    if where
                    else "The NUL character (\\u0000) is not allowed in the request body.",
                    param=where,
                    code="invalid_value",
                )
        elif isinstance(current, dict):
            for key, item in current.items():
                inner = f"{where}.{key}" if where else str(key)
                if "\x00" in key:
                    pending.append((key, where))
                pending.append((item, inner))
        elif isinstance(current, list):
            pending.extend((item, f"{where}[{index}]") for index, item in enumerate(current))


# --- Bodies read outside DRF (the hot path and the streaming views) -----------------------------


def json_value(raw: bytes) -> Any:
    """The decoded body, or the 400 `invalid_json` envelope; an empty body reads as null."""
    try:
        return orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        raise errors.InvalidRequest(
            "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None


def json_object(raw: bytes) -> dict[str, Any]:
    """`json_value`, refusing anything but a JSON object."""
    body = json_value(raw)
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def request_body(request: HttpRequest, *, limit: int) -> bytes:
    """A streaming view's raw body, at most `limit` bytes (413 beyond).

    request.read(), not request.body: chat and response bodies (images, long histories) outgrow
    Django's 2.5 MB DATA_UPLOAD_MAX_MEMORY_SIZE, and the limit that applies is the caller's, as on
    the hot path. Django has already received the whole body (in memory, or spooled to a local
    file when large), so this is a local read, not a wait on the client.
    """
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > limit:
        raise errors.RequestTooLarge("The request body is too large.")
    return request.read()
