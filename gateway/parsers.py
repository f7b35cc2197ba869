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
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


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
