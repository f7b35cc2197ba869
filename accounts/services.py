"""Writes for the authentication routes: token pairs, rotation and revocation, guests, Google.

Tokens are simplejwt's, with its blacklist app as the revocation list: every refresh token has
an OutstandingToken row, using one blacklists it, and a blacklisted token is refused. One
deliberate departure from `RefreshToken.for_user`: it would copy the whole signed token into
`OutstandingToken.token`, and raw tokens never go into a database column here. The row keeps
only the jti, owner and expiry, which is all that revocation needs.
"""

from __future__ import annotations

import logging
import secrets
import string
from dataclasses import dataclass
from typing import Any

from allauth.socialaccount.models import SocialAccount
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from accounts import selectors
from accounts.google import PROVIDER_ID, GoogleIdentity
from accounts.models import RevokedTokenFamily, User
from gateway.errors import AuthenticationError, Conflict, Forbidden, ServerError
from organizations.services import user_get_or_create, user_provision

logger = logging.getLogger(__name__)

GUEST_EMAIL_DOMAIN = "guest.jan.ai"
_GUEST_ALPHABET = string.digits + string.ascii_lowercase


@dataclass(frozen=True)
class IssuedTokens:
    access: str
    refresh: str
    access_expires_in: int
    refresh_max_age: int


def _invalid_refresh() -> AuthenticationError:
    return AuthenticationError(
        "The refresh token is invalid, expired or already used; sign in again.",
        code="invalid_refresh_token",
    )


@transaction.atomic
def token_pair_issue(*, user: User, family: str | None = None) -> IssuedTokens:
    """A new refresh token (recorded as outstanding) and the access token derived from it.

    `family`: the sign-in a rotated token continues; a new sign-in starts its own family.
    """
    refresh = RefreshToken()
    refresh[api_settings.USER_ID_CLAIM] = getattr(user, api_settings.USER_ID_FIELD)
    refresh[selectors.FAMILY_CLAIM] = family or refresh[api_settings.JTI_CLAIM]
    OutstandingToken.objects.create(
        user=user,
        jti=refresh[api_settings.JTI_CLAIM],
        token="",  # see the module docstring
        created_at=refresh.current_time,
        expires_at=datetime_from_epoch(refresh["exp"]),
    )
    access = refresh.access_token
    lifetime = api_settings.ACCESS_TOKEN_LIFETIME
    return IssuedTokens(
        access=str(access),
        refresh=str(refresh),
        access_expires_in=int(lifetime.total_seconds()),
        refresh_max_age=int(api_settings.REFRESH_TOKEN_LIFETIME.total_seconds()),
    )


def _blacklist(token: RefreshToken) -> bool:
    """Blacklist a verified refresh token; False if someone else already did.

    The one-to-one constraint on BlacklistedToken decides races: of two concurrent uses of the
    same token exactly one insert succeeds, on PostgreSQL and SQLite alike.
    """
    user = selectors.user_for_refresh_token(token)
    outstanding, _ = OutstandingToken.objects.get_or_create(
        jti=token[api_settings.JTI_CLAIM],
        defaults={"user": user, "token": "", "expires_at": datetime_from_epoch(token["exp"])},
    )
    try:
        with transaction.atomic():  # a savepoint, so the caller's transaction survives a loss
            BlacklistedToken.objects.create(token=outstanding)
    except IntegrityError:
        return False
    return True


def _family_revoke(claims: RefreshToken | dict[str, Any]) -> None:
    """Refuse every token of this sign-in from now on (idempotent)."""
    family = selectors.refresh_token_family(claims)
    user = User.objects.filter(public_id=claims.get(api_settings.USER_ID_CLAIM) or "").first()
    RevokedTokenFamily.objects.get_or_create(family=family, defaults={"user": user})
    logger.warning("refresh token replayed: its token family is revoked", extra={"token_family": family})


@transaction.atomic
def _rotate(raw: str) -> tuple[User, IssuedTokens] | None:
    """The rotation itself; None when refused. Returns rather than raises, so the revocation of
    a replayed token's family is kept (an exception would roll it back)."""
    token = selectors.refresh_token_parse(raw)
    if token is None:
        replayed = selectors.refresh_token_replayed(raw)
        if replayed is not None:
            _family_revoke(replayed)
        return None
    user = selectors.user_for_refresh_token(token)
    if user is None:
        return None
    if not _blacklist(token):
        _family_revoke(token)  # lost a race with another use of the same token: a replay too
        return None
    return user, token_pair_issue(user=user, family=selectors.refresh_token_family(token))


def refresh_token_rotate(*, raw: str) -> tuple[User, IssuedTokens]:
    """Use a refresh token once: blacklist it and issue a new pair in the same family.

    Raises AuthenticationError for a bad, expired or already used token, or a user who is gone
    or disabled. A token that comes back after its use (even racing it) revokes its whole
    family, the successors it was rotated into included: someone else holds a copy (the
    reuse-detection rule of the OAuth 2.0 Security Best Current Practice).
    """
    rotated = _rotate(raw)
    if rotated is None:
        raise _invalid_refresh()
    return rotated


@transaction.atomic
def refresh_token_revoke(*, raw: str | None) -> None:
    """Logout. Idempotent: an absent, invalid or already revoked token is nothing to do."""
    token = selectors.refresh_token_parse(raw)
    if token is not None:
        _blacklist(token)


def _guest_name() -> str:
    return "jan_" + "".join(secrets.choice(_GUEST_ALPHABET) for _ in range(12))


@transaction.atomic
def guest_create() -> User:
    """A guest user (with their Default Project). 36^12 names make a clash all but impossible."""
    for _ in range(3):
        name = _guest_name()
        user, created = user_get_or_create(email=f"{name}@{GUEST_EMAIL_DOMAIN}", name=name, is_guest=True)
        if created:
            return user
    raise ServerError("Could not allocate a guest name.", code="guest_create_failed")


@transaction.atomic
def guest_login(*, refresh_raw: str | None) -> tuple[User, IssuedTokens]:
    """Re-issue tokens for the caller's refresh cookie, or create a guest.

    A cookie only counts if it verifies, is unused and belongs to an existing, enabled user;
    anything else (a stale or foreign cookie) gets a fresh guest, as no cookie would. The
    cookie's token is rotated, not left valid beside the new one.
    """
    if refresh_raw:
        try:
            return refresh_token_rotate(raw=refresh_raw)
        except AuthenticationError:
            pass  # a refused cookie wrote nothing but, for a replay, its family's revocation
    user = guest_create()
    return user, token_pair_issue(user=user)


def _google_extra_data(identity: GoogleIdentity) -> dict[str, object]:
    # Profile claims only: no Google token is kept (no allauth SocialToken).
    return {"sub": identity.sub, "email": identity.email, "name": identity.name, "picture": identity.picture}


def _email_taken(email: str, *, by_other_than: User) -> bool:
    return User.objects.filter(email__iexact=email).exclude(pk=by_other_than.pk).exists()


def _google_user_resolve(identity: GoogleIdentity, refresh_raw: str | None) -> User:
    linked = (
        SocialAccount.objects.select_related("user")
        .select_for_update()
        .filter(provider=PROVIDER_ID, uid=identity.sub)
        .first()
    )
    if linked is not None:
        # A returning Google account, matched by its stable subject: its e-mail may have changed.
        user: User = linked.user
        user.name = identity.name or user.name
        if user.email != identity.email and not _email_taken(identity.email, by_other_than=user):
            user.email = identity.email
        user.save(update_fields=["name", "email"])
        return user

    existing = User.objects.select_for_update().filter(email__iexact=identity.email).first()
    if existing is not None:
        existing.name = identity.name or existing.name
        existing.save(update_fields=["name"])
        return existing

    token = selectors.refresh_token_parse(refresh_raw)
    guest = selectors.user_for_refresh_token(token) if token is not None else None
    if token is not None and guest is not None and guest.is_guest:
        # Upgrade in place: same row, so the public id, projects and data all stay.
        guest = User.objects.select_for_update().get(pk=guest.pk)
        if guest.is_guest:
            guest.email, guest.name, guest.is_guest = identity.email, identity.name or guest.name, False
            guest.save(update_fields=["email", "name", "is_guest"])
            user_provision(user=guest)  # idempotent; promotes ORGANIZATION_ADMIN_EMAILS
            _blacklist(token)  # the guest's cookie is replaced, not left valid beside the new one
            return guest

    user, _ = user_get_or_create(email=identity.email, name=identity.name)
    return user


@transaction.atomic
def google_sign_in(*, identity: GoogleIdentity, refresh_raw: str | None) -> tuple[User, IssuedTokens]:
    """Sign in with a verified Google identity and issue tokens.

    Resolution order (jan-server §4.1, plus the allauth link): the user already linked to this
    Google subject; else the user with this e-mail; else, if the refresh cookie belongs to a
    guest, that guest upgraded in place; else a new user. The Google account is recorded as an
    allauth SocialAccount (provider "google", uid = sub).
    """
    try:
        with transaction.atomic():
            user = _google_user_resolve(identity, refresh_raw)
    except IntegrityError:
        # Only a concurrent registration of the same e-mail gets here.
        raise Conflict(
            "This account changed while signing in; please try again.", code="account_conflict"
        ) from None
    if not user.is_active:
        raise Forbidden("This account is disabled.", code="account_disabled")
    account, created = SocialAccount.objects.get_or_create(
        provider=PROVIDER_ID,
        uid=identity.sub,
        defaults={"user": user, "extra_data": _google_extra_data(identity)},
    )
    if not created:
        account.extra_data = _google_extra_data(identity)
        account.save(update_fields=["extra_data", "last_login"])
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])
    return user, token_pair_issue(user=user)
