"""Provider API keys at rest: Fernet (AES-128-CBC + HMAC) keyed from MODEL_PROVIDER_SECRET."""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


@cache
def _fernet(secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


def encrypt(plain: str) -> str:
    return _fernet(settings.MODEL_PROVIDER_SECRET).encrypt(plain.encode()).decode() if plain else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet(settings.MODEL_PROVIDER_SECRET).decrypt(token.encode()).decode()
    except InvalidToken:
        # MODEL_PROVIDER_SECRET changed: the stored key is unreadable; call without one.
        return ""
