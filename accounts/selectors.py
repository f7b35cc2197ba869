"""Reads for the authentication routes.

A user's own record is its own tenant: these selectors are called with the id the principal or
a verified refresh token carries, never with one taken from the request.
"""

from __future__ import annotations

from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from gateway.errors import NotFound


def refresh_token_parse(raw: str | None) -> RefreshToken | None:
    """The refresh token if its signature, type and expiry check out and it is not blacklisted."""
    if not raw:
        return None
    try:
        return RefreshToken(raw)  # type: ignore[arg-type]  # simplejwt takes the encoded str
    except TokenError:
        return None


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
