"""Reads for the authentication routes.

A user's own record is its own tenant: these selectors are called with the id the principal or
a verified refresh token carries, never with one taken from the request.
"""

from __future__ import annotations

from typing import Any

from rest_framework_simplejwt.exceptions import TokenBackendError, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import RevokedTokenFamily, User
from gateway.errors import NotFound

FAMILY_CLAIM = "fam"


def refresh_token_family(token: RefreshToken | dict[str, Any]) -> str:
    """The sign-in a refresh token descends from (tokens issued before families existed are
    their own family's first token)."""
    return str(token.get(FAMILY_CLAIM) or token.get(api_settings.JTI_CLAIM) or "")


def refresh_token_parse(raw: str | None) -> RefreshToken | None:
    """The refresh token if its signature, type and expiry check out and neither it nor its
    family is revoked."""
    if not raw:
        return None
    try:
        token = RefreshToken(raw)  # type: ignore[arg-type]  # simplejwt takes the encoded str
    except TokenError:
        return None
    if RevokedTokenFamily.objects.filter(family=refresh_token_family(token)).exists():
        return None
    return token


def refresh_token_replayed(raw: str | None) -> dict[str, Any] | None:
    """The claims of a genuine refresh token (signature, type and expiry check out) that was
    already used: a replay. None for anything else, so a forged token can revoke nothing."""
    if not raw:
        return None
    try:
        claims: dict[str, Any] = token_backend.decode(raw, verify=True)  # type: ignore[arg-type]  # signature, expiry
    except TokenBackendError:
        return None
    if claims.get(api_settings.TOKEN_TYPE_CLAIM) != RefreshToken.token_type:
        return None
    used = BlacklistedToken.objects.filter(token__jti=claims.get(api_settings.JTI_CLAIM)).exists()
    return claims if used else None


def user_for_refresh_token(token: RefreshToken) -> User | None:
    """The enabled user a verified refresh token belongs to, if it still exists."""
    public_id = token.get(api_settings.USER_ID_CLAIM)
    if not isinstance(public_id, str) or not public_id:
        return None
    return User.objects.filter(public_id=public_id, is_active=True).first()


def user_get(*, user_id: int) -> User:
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise NotFound("No such user.", code="user_not_found")
    return user
