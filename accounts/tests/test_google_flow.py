"""Google sign-in against the fake identity provider (tests/fakes/google_idp.py), end to end."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from allauth.socialaccount.models import SocialAccount
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from accounts import google
from accounts.models import User
from organizations import selectors as org_selectors
from organizations.tests.factories import make_user
from tests.fakes.google_idp import KID, FakeGoogleIdP

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _not_dev(settings: Any) -> None:
    """Production cookie flags and no dev helper, whatever GATEWAY_ENV the suite runs under."""
    settings.IS_DEV = False


STATE_COOKIE = "jan_oauth_state"
REFRESH_COOKIE = "jan_refresh_token"


def _error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def _login(client: Client) -> tuple[str, str]:
    """GET /google/login: (authorize URL, state)."""
    response = client.get("/v1/auth/google/login")
    assert response.status_code == 200, response.content
    return response.json()["url"], response.cookies[STATE_COOKIE].value


def _callback(client: Client, code: str, state: str) -> Any:
    return client.post(
        "/v1/auth/google/callback", {"code": code, "state": state}, content_type="application/json"
    )


def _sign_in(client: Client, idp: FakeGoogleIdP, **claims: Any) -> Any:
    """Login URL, state cookie, a code for these claims, callback: the callback's response."""
    _, state = _login(client)
    return _callback(client, idp.issue_code(**claims), state)


def _sub_of(response: Any) -> str:
    return str(AccessToken(response.json()["access_token"])["sub"])  # type: ignore[arg-type]


# --- the login URL -------------------------------------------------------------------------


def test_login_url_and_state_cookie(google_idp: FakeGoogleIdP) -> None:
    response = Client().get("/v1/auth/google/login")

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "google.login.url"
    url = urlsplit(body["url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == google_idp.authorize_url
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert query["client_id"] == google_idp.client_id
    assert query["redirect_uri"] == google_idp.redirect_uri
    assert query["response_type"] == "code"
    assert query["scope"].split() == ["openid", "email", "profile"]
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    morsel = response.cookies[STATE_COOKIE]
    assert query["state"] == morsel.value
    assert len(morsel.value) >= 16
    assert morsel["max-age"] == 300
    assert morsel["httponly"] is True
    assert morsel["secure"] is True
    assert morsel["samesite"] == "Strict"


def test_state_cookie_in_dev_is_lax_and_not_secure(google_idp: FakeGoogleIdP, settings: Any) -> None:
    settings.IS_DEV = True
    morsel = Client().get("/v1/auth/google/login").cookies[STATE_COOKIE]
    assert morsel["httponly"] is True
    assert not morsel["secure"]
    assert morsel["samesite"] == "Lax"


def test_each_login_gets_a_new_state(google_idp: FakeGoogleIdP) -> None:
    assert _login(Client())[1] != _login(Client())[1]


def test_login_when_google_is_not_configured_is_503(settings: Any) -> None:
    settings.OAUTH2_GOOGLE_CLIENT_ID = ""
    _error(Client().get("/v1/auth/google/login"), 503, "google_oauth_not_configured")


# --- the whole flow ----------------------------------------------------------------------------


def test_full_flow_through_the_authorize_redirect(google_idp: FakeGoogleIdP) -> None:
    """login URL -> (browser at the IdP) -> redirect with code -> callback -> tokens -> /me."""
    google_idp.next_identity = {"email": "Ada@Example.com", "name": "Ada Lovelace", "sub": "1001"}
    client = Client()
    url, state = _login(client)

    redirect = httpx.get(url, follow_redirects=False)
    assert redirect.status_code == 302
    back = {key: values[0] for key, values in parse_qs(urlsplit(redirect.headers["Location"]).query).items()}
    assert back["state"] == state
    response = _callback(client, back["code"], back["state"])

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["object"] == "access.token"
    assert body["expires_in"] == 900
    assert response["Cache-Control"] == "no-store"
    refresh = response.cookies[REFRESH_COOKIE]
    assert refresh["max-age"] == 7 * 24 * 3600  # not the 15 minutes of jan-server
    assert refresh["httponly"] is True
    assert refresh["secure"] is True
    assert refresh["samesite"] == "Strict"
    assert response.cookies[STATE_COOKIE].value == ""  # the state is single use

    # The exchange sent the client credentials, redirect URI and the PKCE verifier.
    form = google_idp.token_requests[-1].form
    assert form["client_secret"] == google_idp.client_secret
    assert form["redirect_uri"] == google_idp.redirect_uri
    assert len(form["code_verifier"]) == 43

    me = Client().get("/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    assert me.status_code == 200
    assert me.json()["email"] == "ada@example.com"
    assert me.json()["name"] == "Ada Lovelace"
    assert me.json()["is_guest"] is False
    user = User.objects.get(public_id=me.json()["id"])
    assert org_selectors.project_default_for_user(user_id=user.pk) is not None
    link = SocialAccount.objects.get(provider="google", uid="1001")
    assert link.user_id == user.pk
    assert link.extra_data["email"] == "ada@example.com"
    assert "token" not in str(link.extra_data)

    # And the refresh cookie works with the refresh route.
    assert client.get("/v1/auth/refresh-token").status_code == 200


def test_a_wrong_pkce_verifier_is_refused_by_the_provider(google_idp: FakeGoogleIdP) -> None:
    """The state ties the verifier: a code obtained for one state cannot be redeemed with another."""
    client = Client()
    url, _ = _login(client)
    code = parse_qs(urlsplit(httpx.get(url).headers["Location"]).query)["code"][0]
    _, other_state = _login(client)  # the cookie now holds the second state

    _error(_callback(client, code, other_state), 400, "oauth_code_exchange_failed")


def test_returning_user_is_matched_and_renamed(google_idp: FakeGoogleIdP) -> None:
    existing = make_user(email="grace@example.com", name="Old Name")
    project = org_selectors.project_default_for_user(user_id=existing.pk)

    response = _sign_in(Client(), google_idp, email="grace@example.com", name="Grace Hopper", sub="2002")

    assert response.status_code == 200, response.content
    assert _sub_of(response) == existing.public_id
    existing.refresh_from_db()
    assert existing.name == "Grace Hopper"
    assert User.objects.filter(email="grace@example.com").count() == 1
    assert org_selectors.project_default_for_user(user_id=existing.pk) == project
    assert SocialAccount.objects.get(uid="2002").user_id == existing.pk

    # Second sign-in, Google e-mail changed: matched by the linked subject, not the e-mail.
    again = _sign_in(Client(), google_idp, email="grace.h@example.com", name="Grace B. Hopper", sub="2002")
    assert _sub_of(again) == existing.public_id
    existing.refresh_from_db()
    assert existing.email == "grace.h@example.com"
    assert SocialAccount.objects.filter(uid="2002").count() == 1


def test_new_user_is_registered(google_idp: FakeGoogleIdP) -> None:
    response = _sign_in(Client(), google_idp, email="new@example.com", name="New Person")

    user = User.objects.get(public_id=_sub_of(response))
    assert user.email == "new@example.com"
    assert not user.is_guest
    assert org_selectors.project_default_for_user(user_id=user.pk) is not None


def test_guest_is_upgraded_in_place(google_idp: FakeGoogleIdP) -> None:
    client = Client()
    guest_login = client.post("/v1/auth/guest-login")
    guest = User.objects.get(public_id=_sub_of(guest_login))
    guest_refresh = guest_login.cookies[REFRESH_COOKIE].value
    project = org_selectors.project_default_for_user(user_id=guest.pk)
    assert project is not None
    users_before = User.objects.count()

    response = _sign_in(client, google_idp, email="upgraded@example.com", name="Up Graded", sub="3003")

    assert response.status_code == 200, response.content
    assert _sub_of(response) == guest.public_id  # same public id
    guest.refresh_from_db()
    assert guest.is_guest is False
    assert guest.email == "upgraded@example.com"
    assert guest.name == "Up Graded"
    assert User.objects.count() == users_before
    assert org_selectors.project_default_for_user(user_id=guest.pk) == project  # data kept
    assert SocialAccount.objects.get(uid="3003").user_id == guest.pk
    # The guest's refresh token was replaced, not left valid beside the new one.
    stale = Client()
    stale.cookies[REFRESH_COOKIE] = guest_refresh
    _error(stale.get("/v1/auth/refresh-token"), 401, "invalid_refresh_token")


def test_a_registered_users_cookie_is_not_upgraded(google_idp: FakeGoogleIdP) -> None:
    """Only a guest is upgraded: a signed-in registered user signing in with another Google
    account gets that account, and keeps their own."""
    client = Client()
    first = _sign_in(client, google_idp, email="one@example.com", sub="4001")
    second = _sign_in(client, google_idp, email="two@example.com", sub="4002")

    assert _sub_of(first) != _sub_of(second)
    assert User.objects.get(public_id=_sub_of(first)).email == "one@example.com"


def test_existing_email_wins_over_the_guest_cookie(google_idp: FakeGoogleIdP) -> None:
    existing = make_user(email="known@example.com")
    client = Client()
    guest_sub = _sub_of(client.post("/v1/auth/guest-login"))

    response = _sign_in(client, google_idp, email="known@example.com")

    assert _sub_of(response) == existing.public_id
    assert User.objects.get(public_id=guest_sub).is_guest  # the guest is left alone


def test_disabled_account_is_refused(google_idp: FakeGoogleIdP) -> None:
    make_user(email="off@example.com").__class__.objects.filter(email="off@example.com").update(
        is_active=False
    )
    _error(_sign_in(Client(), google_idp, email="off@example.com"), 403, "account_disabled")


# --- state ---------------------------------------------------------------------------------


def test_tampered_state_is_400(google_idp: FakeGoogleIdP) -> None:
    client = Client()
    _, state = _login(client)
    code = google_idp.issue_code()

    error = _error(_callback(client, code, state + "x"), 400, "invalid_oauth_state")
    assert error["param"] == "state"
    assert google_idp.token_requests == []  # the code was never sent to Google


def test_missing_state_cookie_is_400(google_idp: FakeGoogleIdP) -> None:
    _error(_callback(Client(), google_idp.issue_code(), "some-state"), 400, "invalid_oauth_state")


def test_missing_state_in_body_is_400(google_idp: FakeGoogleIdP) -> None:
    client = Client()
    _login(client)
    response = client.post(
        "/v1/auth/google/callback", {"code": google_idp.issue_code()}, content_type="application/json"
    )
    _error(response, 400, "invalid_oauth_state")


def test_state_cookie_is_single_use(google_idp: FakeGoogleIdP) -> None:
    client = Client()
    _, state = _login(client)
    assert _callback(client, google_idp.issue_code(), state).status_code == 200
    _error(_callback(client, google_idp.issue_code(), state), 400, "invalid_oauth_state")


@pytest.mark.parametrize(
    "body",
    [{}, {"state": "s"}, {"code": "", "state": "s"}, {"code": 5, "state": "s"}, {"code": "x" * 3000}],
)
def test_bad_callback_body_is_400(google_idp: FakeGoogleIdP, body: dict[str, Any]) -> None:
    client = Client()
    _login(client)
    _error(client.post("/v1/auth/google/callback", body, content_type="application/json"), 400)


def test_callback_with_invalid_json_is_400(google_idp: FakeGoogleIdP) -> None:
    response = Client().post("/v1/auth/google/callback", "{nope", content_type="application/json")
    _error(response, 400, "invalid_json")


# --- the code exchange ---------------------------------------------------------------------


def test_unknown_code_is_400(google_idp: FakeGoogleIdP) -> None:
    client = Client()
    _, state = _login(client)
    error = _error(_callback(client, "4/never-issued", state), 400, "oauth_code_exchange_failed")
    assert "invalid_grant" in error["message"]


def test_code_is_single_use(google_idp: FakeGoogleIdP) -> None:
    code = google_idp.issue_code()
    client = Client()
    _, state = _login(client)
    assert _callback(client, code, state).status_code == 200
    _, state = _login(client)
    _error(_callback(client, code, state), 400, "oauth_code_exchange_failed")


def test_wrong_client_secret_is_400(google_idp: FakeGoogleIdP, settings: Any) -> None:
    settings.OAUTH2_GOOGLE_CLIENT_SECRET = "wrong"
    error = _error(_sign_in(Client(), google_idp), 400, "oauth_code_exchange_failed")
    assert "invalid_client" in error["message"]
    assert "wrong" not in error["message"]


def test_provider_error_is_502(google_idp: FakeGoogleIdP) -> None:
    client = Client()
    _, state = _login(client)
    code = google_idp.issue_code(error=(500, b"<html>oops</html>"))
    error = _error(_callback(client, code, state), 502, "google_unavailable")
    assert error["type"] == "server_error"


def test_unreachable_provider_is_502(google_idp: FakeGoogleIdP, settings: Any) -> None:
    settings.OAUTH2_GOOGLE_TOKEN_URL = "http://127.0.0.1:9/token"  # discard port: nothing listens
    _error(_sign_in(Client(), google_idp), 502, "google_unavailable")


def test_token_response_without_id_token_is_400(google_idp: FakeGoogleIdP) -> None:
    _error(_sign_in(Client(), google_idp, include_id_token=False), 400, "missing_id_token")


def test_unreachable_certs_is_502(google_idp: FakeGoogleIdP, settings: Any) -> None:
    settings.OAUTH2_GOOGLE_CERTS_URL = "http://127.0.0.1:9/certs"
    _error(_sign_in(Client(), google_idp), 502, "google_unavailable")


# --- forged or unacceptable ID tokens ----------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _forged(idp: FakeGoogleIdP, kind: str) -> str:
    claims = idp.claims_for()
    if kind == "wrong_key":
        return idp.mint_id_token(claims, key=_other_key())
    if kind == "unknown_kid":
        return idp.mint_id_token(claims, key=_other_key(), kid="attacker-key")
    if kind == "alg_none":
        return jwt.encode(claims, None, algorithm="none", headers={"kid": KID})
    if kind == "hs256_public_key":
        public_pem = idp.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # PyJWT refuses PEM as an HMAC secret, so sign the confused token by hand.
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
        body = _b64(json.dumps(claims).encode())
        signature = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(signature)}"
    if kind == "tampered_payload":
        token = idp.mint_id_token(claims)
        head, _, sig = token.split(".")
        payload = _b64(json.dumps(dict(claims, email="victim@example.com")).encode())
        return f"{head}.{payload}.{sig}"
    if kind == "garbage":
        return "not-a-jwt"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["wrong_key", "unknown_kid", "alg_none", "hs256_public_key", "tampered_payload", "garbage"]
)
def test_forged_id_token_is_401(google_idp: FakeGoogleIdP, kind: str) -> None:
    response = _sign_in(Client(), google_idp, id_token=_forged(google_idp, kind))

    error = _error(response, 401, "invalid_id_token")
    assert error["type"] == "authentication_error"
    assert REFRESH_COOKIE not in response.cookies
    assert not User.objects.filter(email="victim@example.com").exists()


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"aud": "someone-else.apps.googleusercontent.com"}, "invalid_id_token"),
        ({"iss": "https://evil.example.com"}, "invalid_id_token"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "invalid_id_token"),
        ({"sub": None}, "invalid_id_token"),
        ({"email": None}, "invalid_id_token"),
        ({"email_verified": False}, "email_not_verified"),
        ({"email_verified": None}, "email_not_verified"),
    ],
)
def test_unacceptable_id_token_claims_are_401(
    google_idp: FakeGoogleIdP, claims: dict[str, Any], code: str
) -> None:
    response = _sign_in(Client(), google_idp, **claims)

    error = _error(response, 401, code)
    assert error["type"] == "authentication_error"
    assert User.objects.count() == 0


def test_schemeless_google_issuer_is_accepted(google_idp: FakeGoogleIdP, settings: Any) -> None:
    settings.OAUTH2_GOOGLE_ISSUER = "https://accounts.google.com"
    for issuer in ("https://accounts.google.com", "accounts.google.com"):
        response = _sign_in(Client(), google_idp, iss=issuer)
        assert response.status_code == 200, (issuer, response.content)
    _error(_sign_in(Client(), google_idp, iss="google.com"), 401, "invalid_id_token")


def test_string_email_verified_is_accepted(google_idp: FakeGoogleIdP) -> None:
    assert _sign_in(Client(), google_idp, email_verified="true").status_code == 200


def test_signing_keys_are_cached(google_idp: FakeGoogleIdP) -> None:
    google._jwks_clients.clear()  # start cold, as a fresh worker would
    for _ in range(3):
        assert _sign_in(Client(), google_idp).status_code == 200
    assert google_idp.certs_requests == 1


def test_nothing_is_fetched_before_the_first_callback(google_idp: FakeGoogleIdP) -> None:
    """Discovery is lazy: importing, booting and serving the login URL contact no provider."""
    _login(Client())
    assert google_idp.certs_requests == 0
    assert google_idp.token_requests == []


def test_admin_shows_the_linked_google_account(google_idp: FakeGoogleIdP, settings: Any) -> None:
    # Our User has no username; allauth must be told so (requested for gateway/settings.py),
    # or its str(SocialAccount) raises in the admin.
    settings.ACCOUNT_USER_MODEL_USERNAME_FIELD = None
    response = _sign_in(Client(), google_idp, email="linked@example.com", sub="5005")
    user = User.objects.get(public_id=_sub_of(response))
    staff = User.objects.create_superuser("root@example.com", "pw")
    admin_client = Client()
    admin_client.force_login(staff)

    page = admin_client.get(f"/admin/accounts/user/{user.pk}/change/")

    assert page.status_code == 200
    assert b"5005" in page.content
    assert b"google" in page.content
