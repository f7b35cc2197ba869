"""Guest login, refresh rotation, logout, /me and the dev-only test callback, through HTTP."""

from __future__ import annotations

import logging
import shlex
import threading
from typing import Any

import pytest
from django.test import Client
from pythonjsonlogger.json import JsonFormatter
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts import services
from accounts.models import User
from gateway.errors import AuthenticationError
from organizations import selectors as org_selectors
from organizations.models import ApiKey
from organizations.tests.factories import make_api_key, make_org, make_project, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _not_dev(settings: Any) -> None:
    """Production cookie flags and no dev helper, whatever GATEWAY_ENV the suite runs under."""
    settings.IS_DEV = False


COOKIE = "jan_refresh_token"


def _error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def _guest(client: Client) -> tuple[str, str]:
    """(access token, refresh token) of a new guest on this client."""
    response = client.post("/v1/auth/guest-login")
    assert response.status_code == 200, response.content
    return response.json()["access_token"], response.cookies[COOKIE].value


def _me(token: str) -> Any:
    return Client().get("/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")


# --- guest login ---------------------------------------------------------------------------


def test_guest_login_creates_a_guest_with_a_default_project() -> None:
    response = Client().post("/v1/auth/guest-login")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"object", "access_token", "expires_in"}
    assert body["object"] == "access.token"
    assert body["expires_in"] == 900
    assert response["Cache-Control"] == "no-store"
    access = AccessToken(body["access_token"])  # type: ignore[arg-type]
    user = User.objects.get(public_id=access["sub"])
    assert user.is_guest
    assert user.is_active
    assert user.name.startswith("jan_")
    assert len(user.name) == 16
    assert set(user.name[4:]) <= set("0123456789abcdefghijklmnopqrstuvwxyz")
    assert user.email == f"{user.name}@guest.jan.ai"
    project = org_selectors.project_default_for_user(user_id=user.pk)
    assert project is not None
    assert project.name == "Default Project"
    assert project.organization.is_default


def test_refresh_cookie_flags_outside_dev() -> None:
    response = Client().post("/v1/auth/guest-login")

    morsel = response.cookies[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["secure"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/"
    assert morsel["max-age"] == 7 * 24 * 3600
    refresh = RefreshToken(morsel.value)  # type: ignore[arg-type]
    assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600


def test_refresh_cookie_flags_in_dev(settings: Any) -> None:
    settings.IS_DEV = True
    morsel = Client().post("/v1/auth/guest-login").cookies[COOKIE]

    assert morsel["httponly"] is True
    assert not morsel["secure"]
    assert morsel["samesite"] == "Lax"


def test_raw_refresh_token_is_not_stored() -> None:
    client = Client()
    _, refresh = _guest(client)

    jti = RefreshToken(refresh)["jti"]  # type: ignore[arg-type]
    row = OutstandingToken.objects.get(jti=jti)
    assert row.token == ""
    assert row.user is not None
    assert row.expires_at is not None


def test_guest_login_with_a_valid_cookie_reissues_for_the_same_user() -> None:
    client = Client()
    first_access, first_refresh = _guest(client)

    response = client.post("/v1/auth/guest-login")

    assert response.status_code == 200
    again = AccessToken(response.json()["access_token"])  # type: ignore[arg-type]
    assert again["sub"] == AccessToken(first_access)["sub"]  # type: ignore[arg-type]
    assert User.objects.filter(is_guest=True).count() == 1
    # The cookie was rotated: the first refresh token is spent.
    assert response.cookies[COOKIE].value != first_refresh
    replay = Client()
    replay.cookies[COOKIE] = first_refresh
    _error(replay.get("/v1/auth/refresh-token"), 401, "invalid_refresh_token")


def test_guest_login_with_a_cookie_of_a_disabled_user_creates_a_new_guest() -> None:
    client = Client()
    access, _ = _guest(client)
    User.objects.filter(public_id=AccessToken(access)["sub"]).update(is_active=False)  # type: ignore[arg-type]

    response = client.post("/v1/auth/guest-login")

    assert response.status_code == 200
    new_sub = AccessToken(response.json()["access_token"])["sub"]  # type: ignore[arg-type]
    assert new_sub != AccessToken(access)["sub"]  # type: ignore[arg-type]
    assert User.objects.get(public_id=new_sub).is_active


def test_guest_login_with_a_cookie_of_a_deleted_user_creates_a_new_guest() -> None:
    client = Client()
    access, _ = _guest(client)
    User.objects.filter(public_id=AccessToken(access)["sub"]).delete()  # type: ignore[arg-type]

    response = client.post("/v1/auth/guest-login")

    assert response.status_code == 200
    assert User.objects.filter(is_guest=True).count() == 1


def test_guest_login_with_a_garbage_cookie_creates_a_new_guest() -> None:
    client = Client()
    client.cookies[COOKIE] = "not-a-token"

    response = client.post("/v1/auth/guest-login")

    assert response.status_code == 200
    assert User.objects.filter(is_guest=True).count() == 1


def test_guest_login_rejects_get() -> None:
    _error(Client().get("/v1/auth/guest-login"), 405)


# --- refresh -------------------------------------------------------------------------------


def test_refresh_rotates_and_the_old_token_is_refused() -> None:
    client = Client()
    access, old_refresh = _guest(client)

    response = client.get("/v1/auth/refresh-token")

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "access.token"
    assert body["expires_in"] == 900
    new_refresh = response.cookies[COOKIE].value
    assert new_refresh
    assert new_refresh != old_refresh
    assert AccessToken(body["access_token"])["sub"] == AccessToken(access)["sub"]  # type: ignore[arg-type]
    assert _me(body["access_token"]).status_code == 200

    # The new one works once, and rotates again.
    second = client.get("/v1/auth/refresh-token")
    assert second.status_code == 200
    assert second.cookies[COOKIE].value not in (old_refresh, new_refresh)

    # A used token coming back means a copy exists: refused, and the whole sign-in ends with it.
    replay = Client()
    replay.cookies[COOKIE] = old_refresh
    _error(replay.get("/v1/auth/refresh-token"), 401, "invalid_refresh_token")
    _error(client.get("/v1/auth/refresh-token"), 401, "invalid_refresh_token")


def test_refresh_without_cookie_is_401() -> None:
    error = _error(Client().get("/v1/auth/refresh-token"), 401, "missing_refresh_token")
    assert error["type"] == "authentication_error"


@pytest.mark.parametrize("value", ["garbage", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyX3gifQ."])
def test_refresh_with_a_bad_cookie_is_401(value: str) -> None:
    client = Client()
    client.cookies[COOKIE] = value
    _error(client.get("/v1/auth/refresh-token"), 401, "invalid_refresh_token")


def test_access_token_is_refused_as_a_refresh_token() -> None:
    client = Client()
    access, _ = _guest(client)
    other = Client()
    other.cookies[COOKIE] = access
    _error(other.get("/v1/auth/refresh-token"), 401, "invalid_refresh_token")


def test_refresh_for_a_disabled_user_is_401() -> None:
    client = Client()
    access, _ = _guest(client)
    User.objects.filter(public_id=AccessToken(access)["sub"]).update(is_active=False)  # type: ignore[arg-type]
    _error(client.get("/v1/auth/refresh-token"), 401, "invalid_refresh_token")


def test_refresh_token_is_refused_as_a_bearer_access_token() -> None:
    client = Client()
    access, refresh = _guest(client)

    assert _me(access).status_code == 200
    _error(_me(refresh), 401, "invalid_api_key")


# --- logout --------------------------------------------------------------------------------


def test_logout_blacklists_and_clears_the_cookie() -> None:
    client = Client()
    _, refresh = _guest(client)

    response = client.post("/v1/auth/logout")

    assert response.status_code == 200
    assert response.json() == {"object": "logout", "status": "ok"}
    morsel = response.cookies[COOKIE]
    assert morsel.value == ""
    assert morsel["max-age"] == 0
    _error(client.get("/v1/auth/refresh-token"), 401, "missing_refresh_token")
    # Even a copy of the cookie kept elsewhere is dead.
    copy = Client()
    copy.cookies[COOKIE] = refresh
    _error(copy.get("/v1/auth/refresh-token"), 401, "invalid_refresh_token")
    # ...and cannot resurrect the guest through guest-login either.
    again = copy.post("/v1/auth/guest-login")
    assert again.status_code == 200
    assert AccessToken(again.json()["access_token"])["sub"] != RefreshToken(refresh, verify=False)["sub"]  # type: ignore[arg-type]


def test_logout_by_get_is_405_and_keeps_the_session() -> None:
    client = Client()
    _guest(client)
    response = client.get("/v1/auth/logout")
    error = _error(response, 405)
    assert error["type"] == "invalid_request_error"
    assert response["Allow"] == "POST, OPTIONS"
    assert client.get("/v1/auth/refresh-token").status_code == 200  # still signed in


def test_logout_without_cookie_is_ok() -> None:
    assert Client().post("/v1/auth/logout").json() == {"object": "logout", "status": "ok"}
    client = Client()
    _guest(client)
    assert client.post("/v1/auth/logout").status_code == 200
    _error(client.get("/v1/auth/refresh-token"), 401)


def test_logout_twice_is_ok() -> None:
    client = Client()
    _, refresh = _guest(client)
    client.post("/v1/auth/logout")
    client.cookies[COOKIE] = refresh
    assert client.post("/v1/auth/logout").status_code == 200


# --- me ------------------------------------------------------------------------------------


def test_me_with_a_jwt() -> None:
    client = Client()
    access, _ = _guest(client)
    user = User.objects.get(public_id=AccessToken(access)["sub"])  # type: ignore[arg-type]

    response = _me(access)

    assert response.status_code == 200
    assert response.json() == {
        "object": "me",
        "id": user.public_id,
        "email": user.email,
        "name": user.name,
        "is_guest": True,
        "created_at": int(user.created_at.timestamp()),
    }


@pytest.mark.parametrize("key_type", [ApiKey.Type.PROJECT, ApiKey.Type.ORGANIZATION, ApiKey.Type.ADMIN])
def test_me_with_an_api_key(key_type: str) -> None:
    owner = make_user(name="Key Owner")
    org = make_org(owner=owner)
    make_project(org=org, owner=owner)
    _, raw = make_api_key(org=org, key_type=key_type, user=owner)

    response = _me(raw)

    assert response.status_code == 200, response.content
    assert response.json()["id"] == owner.public_id
    assert response.json()["email"] == owner.email
    assert response.json()["is_guest"] is False


def test_me_with_a_service_account_key_is_404() -> None:
    _, raw = make_api_key(key_type=ApiKey.Type.SERVICE)
    _error(_me(raw), 404, "user_not_found")


@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer sk-project_" + "x" * 40, "Basic abc"])
def test_me_without_a_valid_credential_is_401(header: str | None) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    error = _error(Client().get("/v1/auth/me", **extra), 401)
    assert error["type"] == "authentication_error"


def test_me_for_a_disabled_user_is_401() -> None:
    client = Client()
    access, _ = _guest(client)
    User.objects.filter(public_id=AccessToken(access)["sub"]).update(is_active=False)  # type: ignore[arg-type]
    _error(_me(access), 401)


# --- the dev-only test callback ----------------------------------------------------------------


def test_testcallback_is_404_outside_dev() -> None:
    _error(Client().get("/v1/auth/google/testcallback?code=c&state=s"), 404, "unknown_url")


def test_testcallback_in_dev_prints_a_curl_command(settings: Any) -> None:
    settings.IS_DEV = True
    response = Client().get("/v1/auth/google/testcallback", {"code": "4/a'b c", "state": "st8"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    argv = shlex.split(response.content.decode())
    assert argv[:4] == ["curl", "-i", "-X", "POST"]
    assert argv[4] == "http://testserver/v1/auth/google/callback"
    assert argv[argv.index("-b") + 1] == "jan_oauth_state=st8"
    assert argv[argv.index("-d") + 1] == '{"code": "4/a\'b c", "state": "st8"}'


def test_testcallback_in_dev_needs_code_and_state(settings: Any) -> None:
    settings.IS_DEV = True
    _error(Client().get("/v1/auth/google/testcallback?state=s"), 400)


# --- no token reaches the logs -------------------------------------------------------------


def test_no_token_is_written_to_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    formatter = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="gateway.access"):
        client = Client()
        access, first_refresh = _guest(client)
        assert _me(access).status_code == 200
        rotated = client.get("/v1/auth/refresh-token")
        second_refresh = rotated.cookies[COOKIE].value
        second_access = rotated.json()["access_token"]
        _me(first_refresh)  # a refresh token sent as a bearer: refused, and not logged either
        client.post("/v1/auth/logout")
        replay = Client()
        replay.cookies[COOKIE] = first_refresh
        replay.get("/v1/auth/refresh-token")

    access_lines = [record for record in caplog.records if record.name == "gateway.access"]
    assert len(access_lines) >= 6  # the capture saw the requests
    rendered = "\n".join(formatter.format(record) for record in caplog.records)
    for secret in (access, first_refresh, second_refresh, second_access):
        assert secret not in rendered
        # Not even one of its segments (a payload or signature alone would still leak).
        for segment in secret.split(".")[1:]:
            assert segment not in rendered


@pytest.mark.django_db(transaction=True)
def test_concurrent_reuse_of_one_refresh_token_lets_exactly_one_through() -> None:
    """Two workers redeeming the same refresh token at once: the blacklist's unique constraint
    lets one win; the other gets 401, even though both saw the token as unused."""
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers with a file lock; the race needs PostgreSQL")
    user = make_user()
    raw = services.token_pair_issue(user=user).refresh
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def redeem() -> None:
        from django.db import connections

        try:
            barrier.wait()
            services.refresh_token_rotate(raw=raw)
            outcomes.append("ok")
        except AuthenticationError:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=redeem) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["ok", "refused"]
