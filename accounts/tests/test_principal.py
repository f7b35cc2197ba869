"""The key-type by route-class matrix, bad credentials, and project selection."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from organizations import services
from organizations.models import ApiKey
from organizations.tests.factories import make_api_key, make_org, make_project, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("accounts.tests.urls_for_tests")]

DATA_ROUTES = ["/test/data", "/test/async-data"]


def _get(path: str, token: str | None, **headers: str):  # type: ignore[no-untyped-def]
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    if token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return Client().get(path, **extra)


@pytest.mark.parametrize(
    ("key_type", "data_status", "admin_status"),
    [
        (ApiKey.Type.ADMIN, 403, 200),
        (ApiKey.Type.ORGANIZATION, 200, 403),
        (ApiKey.Type.PROJECT, 200, 403),
        (ApiKey.Type.SERVICE, 200, 403),
        (ApiKey.Type.EPHEMERAL, 200, 403),
    ],
)
def test_key_type_by_route_class(key_type: str, data_status: int, admin_status: int) -> None:
    org = make_org()
    make_project(org=org)
    key, raw = make_api_key(org=org, key_type=key_type)
    for route in DATA_ROUTES:
        response = _get(route, raw)
        assert response.status_code == data_status, (route, response.content)
        if data_status == 403:
            assert response.json()["error"]["type"] == "permission_error"
        else:
            assert response.json()["key"] == key.public_id
            assert response.json()["project"] is not None
    response = _get("/test/admin", raw)
    assert response.status_code == admin_status
    if admin_status == 200:
        assert response.json()["organization"] == org.public_id


@pytest.mark.parametrize("route", [*DATA_ROUTES, "/test/admin"])
@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Basic abc",
        "Bearer sk-project_unknownunknownunknownunknownunknown1",
        "Bearer  sk-project_unknownunknownunknownunknownunknown1",
        "Bearer not-a-jwt",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyX3gifQ.",
    ],
)
def test_bad_credentials_are_401_envelopes(route: str, header: str | None) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = Client().get(route, **extra)
    assert response.status_code == 401
    body = response.json()
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["code"] in ("invalid_api_key", "missing_api_key")


def test_key_with_stray_whitespace_is_refused() -> None:
    _, raw = make_api_key()
    for token in (f" {raw}", f"{raw} ", f"{raw}\t"):
        response = Client().get("/test/data", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 401


@pytest.mark.parametrize(
    "change", ["disable", "delete", "expire", "archive_project", "delete_org", "disable_owner"]
)
def test_unusable_keys_are_401(change: str) -> None:
    key, raw = make_api_key()
    assert _get("/test/data", raw).status_code == 200
    if change == "disable":
        services.api_key_set_enabled(key=key, enabled=False)
    elif change == "delete":
        services.api_key_delete(key=key)
    elif change == "expire":
        ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        services.api_keys_invalidate(project_id=key.project_id)
    elif change == "archive_project":
        assert key.project is not None
        key.project.status = "archived"
        key.project.save()
        services.api_keys_invalidate(project_id=key.project_id)
    elif change == "delete_org":
        key.organization.deleted_at = timezone.now()
        key.organization.save()
        services.api_keys_invalidate(organization_id=key.organization_id)
    elif change == "disable_owner":
        assert key.owner_user is not None
        key.owner_user.is_active = False
        key.owner_user.save()
        services.api_keys_invalidate(organization_id=key.organization_id)
    from organizations import keycache

    keycache._local.clear()  # this process's 1 s tier; other workers wait out their second
    for route in DATA_ROUTES:
        response = _get(route, raw)
        assert response.status_code == 401, (change, route)
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_expired_key_is_refused_even_while_cached() -> None:
    import time

    _, raw = make_api_key(key_type=ApiKey.Type.EPHEMERAL, expires_in=1)
    assert _get("/test/async-data", raw).status_code == 200
    time.sleep(1.1)  # the snapshot stays cached; its expiry is checked on every request
    assert _get("/test/async-data", raw).status_code == 401
    assert _get("/test/data", raw).status_code == 401


def test_organization_key_selects_project_by_header() -> None:
    org = make_org()
    first = make_project(org=org)
    second = make_project(org=org)
    _, raw = make_api_key(org=org, key_type=ApiKey.Type.ORGANIZATION)
    assert _get("/test/data", raw).json()["project"] == first.public_id
    for route in DATA_ROUTES:
        assert _get(route, raw, **{"OpenAI-Project": second.public_id}).json()["project"] == second.public_id
    other = make_project()
    for route in DATA_ROUTES:
        response = _get(route, raw, **{"OpenAI-Project": other.public_id})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "project_not_found"


def test_project_key_refuses_another_project_or_organization() -> None:
    key, raw = make_api_key()
    other = make_project()
    assert _get("/test/data", raw, **{"OpenAI-Project": other.public_id}).status_code == 404
    assert _get("/test/data", raw, **{"OpenAI-Organization": other.organization.public_id}).status_code == 404
    assert key.project is not None
    assert _get("/test/data", raw, **{"OpenAI-Project": key.project.public_id}).status_code == 200


def test_jwt_user_defaults_to_their_project_and_selects_by_header() -> None:
    from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

    user = make_user()
    org = make_org(owner=user)
    chosen = make_project(org=org)
    access = str(AccessToken.for_user(user))
    response = _get("/test/data", access)
    assert response.status_code == 200
    default_project = services.user_provision(user=user)
    assert response.json()["project"] == default_project.public_id
    response = _get("/test/async-data", access, **{"OpenAI-Project": chosen.public_id})
    assert response.json()["project"] == chosen.public_id
    assert response.json()["organization"] == org.public_id
    stranger_project = make_project()
    assert _get("/test/data", access, **{"OpenAI-Project": stranger_project.public_id}).status_code == 404
    assert (
        _get(
            "/test/data", access, **{"OpenAI-Organization": stranger_project.organization.public_id}
        ).status_code
        == 404
    )
    # A refresh token is not an access token.
    assert _get("/test/data", str(RefreshToken.for_user(user))).status_code == 401


def test_jwt_with_wrong_secret_or_algorithm_is_401() -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    user = make_user()
    forged = jwt.encode(
        {"sub": user.public_id, "token_type": "access", "jti": "x", "iss": "jan-gateway", "exp": 4102444800},
        "wrong-secret",
        algorithm="HS256",
    )
    assert _get("/test/data", forged).status_code == 401
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs = jwt.encode(
        {"sub": user.public_id, "token_type": "access", "jti": "x", "exp": 4102444800},
        private,
        algorithm="RS256",
    )
    assert _get("/test/data", rs).status_code == 401


def test_last_used_at_is_recorded() -> None:
    key, raw = make_api_key()
    assert key.last_used_at is None
    assert _get("/test/data", raw).status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None
