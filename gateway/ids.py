"""Public ids: `<prefix>_<random [0-9a-z]>`, never the internal primary key (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.digits + string.ascii_lowercase


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def public_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{random_token(length)}"


_ALNUM = string.ascii_letters + string.digits


def random_token_alnum(length: int) -> str:
    """Mixed-case letters and digits: about 5.95 bits each (48 chars ≈ 285 bits)."""
    return "".join(secrets.choice(_ALNUM) for _ in range(length))
