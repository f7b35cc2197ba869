"""Public ids: `<prefix>_<random [0-9a-z]>`, never the internal primary key (DESIGN §5)."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.digits + string.ascii_lowercase


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def public_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{random_token(length)}"
