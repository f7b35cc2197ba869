"""Google sign-in for a JSON API: the authorize URL, the code exchange, the ID-token check.

Why not allauth's own views. allauth's Google provider drives a browser flow: its login view
redirects, its callback view expects the browser back with a session and answers with an HTML
redirect. The gateway is a JSON API whose front end receives Google's redirect and POSTs the
code (jan-server's contract), with no Django session. So the flow here is the JSON one, and
allauth supplies what it is good at: the provider's identity ("google"), its configured scopes
and PKCE switch (``SOCIALACCOUNT_PROVIDERS["google"]``), and the ``SocialAccount`` record that
links a user to a Google subject (written by accounts.services, shown in Django admin).

The endpoints are settings (``OAUTH2_GOOGLE_AUTHORIZE_URL`` / ``TOKEN_URL`` / ``CERTS_URL`` /
``ISSUER``) so tests run against a local fake identity provider, and nothing is fetched at
import or startup: the signing keys are fetched on the first callback, then cached (jan-server
ran OIDC discovery at boot and died when Google was unreachable).

Nothing here logs or stores a code, a token or the PKCE verifier.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from allauth.socialaccount.providers.google.provider import GoogleProvider
from django.conf import settings
from django.utils.crypto import salted_hmac

from gateway.errors import AuthenticationError, InvalidRequest, ServiceUnavailable, UpstreamError

PROVIDER_ID: str = GoogleProvider.id  # "google": SocialAccount.provider of these links
GOOGLE_ISSUER = "https://accounts.google.com"
_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_CLOCK_SKEW_SECONDS = 30
_DEFAULT_SCOPES = ("openid", "profile", "email")


@dataclass(frozen=True)
class GoogleIdentity:
    sub: str
    email: str
    name: str
    picture: str | None = None


def _provider_settings() -> dict[str, Any]:
    providers: dict[str, Any] = getattr(settings, "SOCIALACCOUNT_PROVIDERS", {})
    return dict(providers.get(PROVIDER_ID, {}))


def _require_configured() -> None:
    if not settings.OAUTH2_GOOGLE_CLIENT_ID or not settings.OAUTH2_GOOGLE_REDIRECT_URL:
        raise ServiceUnavailable(
            "Google sign-in is not configured on this gateway.", code="google_oauth_not_configured"
        )


def pkce_enabled() -> bool:
    return bool(_provider_settings().get("OAUTH_PKCE_ENABLED", True))


def pkce_verifier(state: str) -> str:
    """The PKCE verifier, derived from the state with the server's secret.

    Deriving it keeps the flow stateless (no session, no second cookie): the callback can
    recompute it from the state it has just checked against the cookie, while whoever sees the
    state in the authorize URL still cannot compute the verifier. 43 characters of base64url,
    the minimum RFC 7636 allows.
    """
    digest = salted_hmac("accounts.google.pkce", state, algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def authorize_url(*, state: str) -> str:
    _require_configured()
    scopes = _provider_settings().get("SCOPE") or _DEFAULT_SCOPES
    params = {
        "client_id": settings.OAUTH2_GOOGLE_CLIENT_ID,
        "redirect_uri": settings.OAUTH2_GOOGLE_REDIRECT_URL,
        "response_type": "code",
        "scope": " ".join(scopes),
        "state": state,
        "access_type": "offline",
        "prompt": "select_account",
    }
    if pkce_enabled():
        params.update(code_challenge=_pkce_challenge(pkce_verifier(state)), code_challenge_method="S256")
    return f"{settings.OAUTH2_GOOGLE_AUTHORIZE_URL}?{urlencode(params)}"


def code_exchange(*, code: str, state: str) -> str:
    """Trade the authorization code for Google's tokens; returns the raw ID token.

    Google's answer to a bad code is a 4xx (the caller's fault: 400); an unreachable or failing
    Google is upstream trouble (502), never a 500 of ours.
    """
    _require_configured()
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": settings.OAUTH2_GOOGLE_CLIENT_ID,
        "client_secret": settings.OAUTH2_GOOGLE_CLIENT_SECRET,
        "redirect_uri": settings.OAUTH2_GOOGLE_REDIRECT_URL,
    }
    if pkce_enabled():
        form["code_verifier"] = pkce_verifier(state)
    try:
        with httpx.Client(timeout=_TIMEOUT) as client:
            response = client.post(
                settings.OAUTH2_GOOGLE_TOKEN_URL, data=form, headers={"Accept": "application/json"}
            )
    except httpx.HTTPError:
        raise UpstreamError(
            "Could not reach Google to exchange the authorization code.", code="google_unavailable"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 500 or not isinstance(body, dict):
        raise UpstreamError(
            f"Google answered the code exchange with HTTP {response.status_code}.", code="google_unavailable"
        )
    if response.status_code >= 400:
        # Google's `error` is a short fixed word (invalid_grant, redirect_uri_mismatch…), safe to echo.
        reason = str(body.get("error") or f"HTTP {response.status_code}")[:100]
        raise InvalidRequest(
            f"Google refused the authorization code ({reason}).",
            param="code",
            code="oauth_code_exchange_failed",
        )
    id_token = body.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise InvalidRequest(
            "Google's token response carried no ID token; the 'openid' scope is required.",
            code="missing_id_token",
        )
    return id_token


# One JWKS client per certs URL: PyJWKClient caches the key set (5 min) and refetches it when an
# unknown `kid` appears (Google rotates keys), with a cooldown so forged kids cannot hammer it.
_jwks_clients: dict[str, jwt.PyJWKClient] = {}
_jwks_lock = threading.Lock()


def _jwks_client(url: str) -> jwt.PyJWKClient:
    with _jwks_lock:
        client = _jwks_clients.get(url)
        if client is None:
            client = _jwks_clients[url] = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=10)
        return client


def _accepted_issuers() -> list[str]:
    issuer: str = settings.OAUTH2_GOOGLE_ISSUER
    issuers = [issuer]
    if issuer.rstrip("/") == GOOGLE_ISSUER:
        issuers.append("accounts.google.com")  # Google signs some tokens with the scheme-less form
    return issuers


def _invalid(reason: str) -> AuthenticationError:
    return AuthenticationError(
        f"The Google ID token could not be verified: {reason}", code="invalid_id_token"
    )


def id_token_verify(raw: str) -> GoogleIdentity:
    """Check the ID token's RS256 signature against Google's keys, then aud, iss, exp and claims."""
    try:
        header = jwt.get_unverified_header(raw)
    except jwt.PyJWTError:
        raise _invalid("it is not a JWT.") from None
    # Only RS256, decided before any key lookup: `none`, HS256-with-the-public-key and
    # other algorithm confusions never reach a verifier.
    if header.get("alg") != "RS256":
        raise _invalid("unexpected signing algorithm.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _invalid("no key id.")
    try:
        signing_key = _jwks_client(settings.OAUTH2_GOOGLE_CERTS_URL).get_signing_key(kid)
    except jwt.PyJWKClientConnectionError:
        raise UpstreamError("Could not fetch Google's signing keys.", code="google_unavailable") from None
    except jwt.PyJWKClientError:
        raise _invalid("unknown signing key.") from None
    try:
        claims: dict[str, Any] = jwt.decode(
            raw,
            key=signing_key.key,
            algorithms=["RS256"],
            audience=settings.OAUTH2_GOOGLE_CLIENT_ID,
            issuer=_accepted_issuers(),
            leeway=_CLOCK_SKEW_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise _invalid("it has expired.") from None
    except jwt.InvalidAudienceError:
        raise _invalid("it was issued for another client.") from None
    except jwt.InvalidIssuerError:
        raise _invalid("unexpected issuer.") from None
    except jwt.InvalidSignatureError:
        raise _invalid("bad signature.") from None
    except jwt.PyJWTError:
        raise _invalid("malformed token.") from None

    sub, email, name = claims.get("sub"), claims.get("email"), claims.get("name")
    if not isinstance(sub, str) or not sub or len(sub) > 191:
        raise _invalid("no subject.")
    if not isinstance(email, str) or "@" not in email or len(email) > 254:
        raise _invalid("no e-mail address; the 'email' scope is required.")
    # Older Google tokens carry the flag as the string "true".
    if claims.get("email_verified") not in (True, "true"):
        raise AuthenticationError(
            "Google has not verified this account's e-mail address.", code="email_not_verified"
        )
    picture = claims.get("picture")
    return GoogleIdentity(
        sub=sub,
        email=email.strip().lower(),
        name=(name if isinstance(name, str) else "")[:200],
        picture=picture if isinstance(picture, str) else None,
    )


def identity_from_code(*, code: str, state: str) -> GoogleIdentity:
    """The callback's two network steps: exchange the code, then verify the ID token."""
    return id_token_verify(code_exchange(code=code, state=state))
