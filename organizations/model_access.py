"""Which models a caller may use: allow-lists of model ids or glob patterns (`gpt-4o*`,
`meta-llama/*`) on a project and on a key.

A list travels in the cached key entry (organizations.keycache) like rate limits, so checking
it costs no query; a caller must pass every list that applies (its key's and its project's), and
an empty or absent list allows every model.
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache
from typing import Any

from gateway.errors import Forbidden, InvalidRequest

MAX_PATTERNS = 200


@lru_cache(maxsize=4096)
def _matcher(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in patterns))


def model_allowed(model_access: tuple[tuple[str, ...], ...], model: str) -> bool:
    return all(_matcher(patterns).match(model) is not None for patterns in model_access)


def model_not_allowed(model: str) -> Forbidden:
    return Forbidden(
        f"Your project or API key does not have access to the model '{model}'.",
        param="model",
        code="model_not_allowed",
    )


def allow_list_check(value: Any, *, param: str = "allowed_models") -> list[str]:
    """An allow-list as stored: unique, trimmed ids or globs, in the order given."""
    if not isinstance(value, list) or len(value) > MAX_PATTERNS:
        raise InvalidRequest(
            f"{param} must be an array of at most {MAX_PATTERNS} model ids or glob patterns.", param=param
        )
    checked: list[str] = []
    for index, pattern in enumerate(value):
        if not isinstance(pattern, str) or not pattern.strip() or len(pattern) > 300:
            raise InvalidRequest(
                "Each entry must be a model id or glob pattern of 1-300 characters.", param=f"{param}.{index}"
            )
        if pattern.strip() not in checked:
            checked.append(pattern.strip())
    return checked
