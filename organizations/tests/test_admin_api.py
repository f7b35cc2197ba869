"""The administration API through HTTP: objects, roles, isolation, revocation, audit, budgets."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, RequestFactory

from accounts.auth import principal_from_request
from accounts.services import token_pair_issue
from gateway.errors import AuthenticationError
from organizations.models import ApiKey, AuditLogEntry, OrganizationMember, Project, ProjectMember
from organizations.tests.factories import make_api_key, make_org, make_project, make_user

pytestmark = pytest.mark.django_db


def jwt(user: Any) -> str:
    return token_pair_issue(user=user).access


def call(method: str, path: str, token: str | None, body: Any = None, **headers: str) -> Any:
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    if token:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    client = Client()
    return getattr(client, method)(path, data=body, content_type="application/json", **extra)


@pytest.fixture
def cast() -> dict[str, Any]:
    """An organization with an owner, a reader, a project with a project owner and a member
    (both organization readers), an admin key, a project key; and another organization."""
    owner = make_user()
    org = make_org(owner=owner)
    reader, powner, pmember = make_user(), make_user(), make_user()
    for user in (reader, powner, pmember):
        OrganizationMember.objects.create(organization=org, user=user, role="reader")
    project = make_project(org=org, owner=powner)
    ProjectMember.objects.create(project=project, user=pmember, role="member")
    _, admin_raw = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=owner)
    _, project_raw = make_api_key(project=project, user=powner)
    other = make_org()
    return {
        "org": org,
        "project": project,
        "other": other,
        "other_project": make_project(org=other),
        "owner": owner,
        "tokens": {
            "owner": jwt(owner),
            "reader": jwt(reader),
            "project_owner": jwt(powner),
            "project_member": jwt(pmember),
            "admin_key": admin_raw,
            "project_key": project_raw,
        },
        "users": {"reader": reader, "project_owner": powner, "project_member": pmember},
    }


# --- Exact objects ------------------------------------------------------------------------------


def test_organization_create_and_exact_object() -> None:
    user = make_user()
    response = call("post", "/v1/organization", jwt(user), {"name": "Acme", "description": "Rockets"})
    assert response.status_code == 201
    body = response.json()
    assert body == {
        "object": "organization",
        "id": body["id"],
        "name": "Acme",
        "description": "Rockets",
        "is_default": False,
        "created_at": body["created_at"],
    }
    assert body["id"].startswith("org_")
    assert isinstance(body["created_at"], int)
    listed = call("get", "/v1/organization", jwt(user)).json()
    assert body["id"] in [row["id"] for row in listed["data"]]
    assert set(listed) == {"object", "data", "first_id", "last_id", "has_more"}


def test_project_and_project_key_objects(cast: dict[str, Any]) -> None:
    org, token = cast["org"], cast["tokens"]["owner"]
    created = call("post", f"/v1/organization/{org.public_id}/projects", token, {"name": "P1"}).json()
    assert created == {
        "object": "organization.project",
        "id": created["id"],
        "name": "P1",
        "status": "active",
        "created_at": created["created_at"],
        "archived_at": None,
    }
    key = call(
        "post", f"/v1/organization/{org.public_id}/projects/{created['id']}/api_keys", token, {"name": "k"}
    ).json()
    owner = cast["owner"]
    assert key == {
        "object": "organization.project.api_key",
        "id": key["id"],
        "name": "k",
        "description": "",
        "type": "project",
        "redacted_value": "sk-…" + key["value"][-4:],
        "project_id": created["id"],
        "owner": {"type": "user", "id": owner.public_id, "name": owner.name, "email": owner.email},
        "enabled": True,
        "created_at": key["created_at"],
        "expires_at": None,
        "last_used_at": None,
        "value": key["value"],
    }
    assert key["value"].startswith("sk-project_")
    # the org-implied form, with the JWT selecting the organization as the OpenAI SDK does
    listed = call(
        "get",
        f"/v1/organization/projects/{created['id']}/api_keys",
        token,
        **{"OpenAI-Organization": org.public_id},
    ).json()
    assert listed["data"] == [{k: v for k, v in key.items() if k != "value"}]


def test_admin_key_and_org_key_routes(cast: dict[str, Any]) -> None:
    token = cast["tokens"]["admin_key"]
    created = call("post", "/v1/organization/admin_api_keys", token, {"name": "ops"})
    assert created.status_code == 201
    body = created.json()
    assert body["object"] == "organization.admin_api_key"
    assert body["value"].startswith("sk-admin_")
    assert call("get", f"/v1/organization/admin_api_keys/{body['id']}", token).json()["object"] == (
        "organization.admin_api_key"
    )
    assert "value" not in call("get", "/v1/organization/admin_api_keys", token).json()["data"][0]
    deleted = call("delete", f"/v1/organization/admin_api_keys/{body['id']}", token)
    assert deleted.json() == {
        "object": "organization.admin_api_key.deleted",
        "id": body["id"],
        "deleted": True,
    }
    org_key = call("post", f"/v1/organization/{cast['org'].public_id}/api_keys", token, {"name": "o"}).json()
    assert org_key["object"] == "organization.api_key"
    assert org_key["value"].startswith("sk-organization_")
    bad = call("post", f"/v1/organization/{cast['org'].public_id}/api_keys", token, {"type": "admin"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "type"


def test_members_service_accounts_objects(cast: dict[str, Any]) -> None:
    org, project, token = cast["org"], cast["project"], cast["tokens"]["owner"]
    newcomer = make_user(name="New")
    make_project(org=org, owner=newcomer)  # shares the organization through a project of their own
    added = call("post", f"/v1/organization/{org.public_id}/users", token, {"email": newcomer.email})
    assert added.status_code == 201
    assert added.json() == {
        "object": "organization.user",
        "id": newcomer.public_id,
        "email": newcomer.email,
        "name": "New",
        "role": "reader",
        "added_at": added.json()["added_at"],
    }
    duplicate = call(
        "post", f"/v1/organization/{org.public_id}/users", token, {"user_id": newcomer.public_id}
    )
    assert duplicate.status_code == 400
    assert duplicate.json()["error"]["param"] == "user_id"
    changed = call(
        "post", f"/v1/organization/{org.public_id}/users/{newcomer.public_id}", token, {"role": "owner"}
    )
    assert changed.json()["role"] == "owner"
    puser = call(
        "post",
        f"/v1/organization/{org.public_id}/projects/{project.public_id}/users",
        token,
        {"user_id": newcomer.public_id},
    ).json()
    assert puser["object"] == "organization.project.user"
    assert puser["role"] == "member"
    svc = call(
        "post",
        f"/v1/organization/{cast['org'].public_id}/projects/{project.public_id}/service_accounts",
        token,
        {"name": "bot"},
    )
    body = svc.json()
    assert svc.status_code == 201
    assert body == {
        "object": "organization.project.service_account",
        "id": body["id"],
        "name": "bot",
        "role": "member",
        "project_id": project.public_id,
        "created_at": body["created_at"],
        "api_key": {
            "object": "organization.project.service_account.api_key",
            "id": body["api_key"]["id"],
            "name": "bot",
            "value": body["api_key"]["value"],
            "created_at": body["api_key"]["created_at"],
        },
    }
    raw = body["api_key"]["value"]
    assert raw.startswith("sk-service_")
    gone = call(
        "delete",
        f"/v1/organization/{cast['org'].public_id}/projects/{project.public_id}/service_accounts/{body['id']}",
        token,
    )
    assert gone.json()["deleted"] is True
    with pytest.raises(AuthenticationError):
        principal_from_request(_request(raw))
    removed = call("delete", f"/v1/organization/{org.public_id}/users/{newcomer.public_id}", token)
    assert removed.json() == {
        "object": "organization.user.deleted",
        "id": newcomer.public_id,
        "deleted": True,
    }
    assert not ProjectMember.objects.filter(user=newcomer, project=project).exists()


def test_last_owner_cannot_leave_or_be_demoted(cast: dict[str, Any]) -> None:
    org, owner, token = cast["org"], cast["owner"], cast["tokens"]["owner"]
    for method, body in (("delete", None), ("post", {"role": "reader"})):
        response = call(method, f"/v1/organization/{org.public_id}/users/{owner.public_id}", token, body)
        assert response.status_code == 400, method
        assert response.json()["error"]["code"] == "last_owner"
    assert OrganizationMember.objects.get(organization=org, user=owner).role == "owner"


# --- Roles and isolation -------------------------------------------------------------------------

# Every route against every kind of caller: organizations/tests/test_authorization_matrix.py.


@pytest.mark.parametrize("caller", ["owner", "admin_key", "reader", "project_owner", "project_member"])
def test_other_organization_is_404(cast: dict[str, Any], caller: str) -> None:
    other, other_project = cast["other"], cast["other_project"]
    token = cast["tokens"][caller]
    for path in (
        f"/v1/organization/{other.public_id}",
        f"/v1/organization/{other.public_id}/projects/{other_project.public_id}",
        f"/v1/organization/projects/{other_project.public_id}",
    ):
        response = call("get", path, token)
        assert response.status_code == 404, (path, response.content)
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_no_credential_is_401(cast: dict[str, Any]) -> None:
    response = call("get", f"/v1/organization/{cast['org'].public_id}", None)
    assert response.status_code == 401


# --- Revocation ------------------------------------------------------------------------------------


def _request(raw: str) -> Any:
    return RequestFactory().get("/x", HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_organization_delete_stops_its_keys_at_once(
    cast: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    org = cast["org"]
    project_raw, admin_raw = cast["tokens"]["project_key"], cast["tokens"]["admin_key"]
    assert principal_from_request(_request(project_raw)).organization_id == org.pk  # warm the cache
    with django_capture_on_commit_callbacks(execute=True):
        response = call("delete", f"/v1/organization/{org.public_id}", admin_raw)
    assert response.json() == {"object": "organization.deleted", "id": org.public_id, "deleted": True}
    for raw, route in ((project_raw, "data"), (admin_raw, "admin")):
        with pytest.raises(AuthenticationError):
            principal_from_request(_request(raw), route=route)  # type: ignore[arg-type]


def test_project_archive_stops_its_keys_and_hides_it(
    cast: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    org, project, token = cast["org"], cast["project"], cast["tokens"]["owner"]
    raw = cast["tokens"]["project_key"]
    principal_from_request(_request(raw))
    with django_capture_on_commit_callbacks(execute=True):
        archived = call(
            "post", f"/v1/organization/{org.public_id}/projects/{project.public_id}/archive", token
        )
    assert archived.json()["status"] == "archived"
    assert archived.json()["archived_at"]
    with pytest.raises(AuthenticationError):
        principal_from_request(_request(raw))
    ids = [
        row["id"] for row in call("get", f"/v1/organization/{org.public_id}/projects", token).json()["data"]
    ]
    assert project.public_id not in ids
    path = f"/v1/organization/{org.public_id}/projects?include_archived=true"
    assert project.public_id in [row["id"] for row in call("get", path, token).json()["data"]]
    new_key = call(
        "post",
        f"/v1/organization/{cast['org'].public_id}/projects/{project.public_id}/api_keys",
        cast["tokens"]["admin_key"],
        {"name": "x"},
    )
    assert new_key.status_code == 400


def test_project_key_delete_revokes(cast: dict[str, Any], django_capture_on_commit_callbacks: Any) -> None:
    project, token = cast["project"], cast["tokens"]["project_member"]
    created = call(
        "post",
        f"/v1/organization/{cast['org'].public_id}/projects/{project.public_id}/api_keys",
        token,
        {"name": "mine"},
    ).json()
    principal_from_request(_request(created["value"]))
    with django_capture_on_commit_callbacks(execute=True):
        deleted = call(
            "delete",
            f"/v1/organization/{cast['org'].public_id}/projects/{project.public_id}/api_keys/{created['id']}",
            token,
        )
    assert deleted.json() == {
        "object": "organization.project.api_key.deleted",
        "id": created["id"],
        "deleted": True,
    }
    with pytest.raises(AuthenticationError):
        principal_from_request(_request(created["value"]))


# --- Bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/organization", {"name": "a", "colour": "red"}, "colour"),
        ("/v1/organization", {"name": "a", "description": []}, "description"),
        ("/v1/organization", {"name": 5.5}, "name"),
        ("/v1/organization/{org}/projects", {"name": 0}, "name"),
        ("/v1/organization", {}, "name"),
        ("/v1/organization/{org}/users", {"email": "not-an-email"}, "email"),
        ("/v1/organization/{org}/users", {"email": "nobody@example.com"}, "email"),
        ("/v1/organization/{org}/users", {"user_id": "x", "role": "king"}, "role"),
        ("/v1/organization/{org}/invites", {"email": "a@b"}, "email"),
        (
            "/v1/organization/{org}/invites",
            {"email": "a@example.com", "projects": [{"id": "proj_nope"}]},
            "projects[0].id",
        ),
        ("/v1/organization/{org}/projects/{project}/api_keys", {"type": "ephemeral"}, "expires_in"),
        (
            "/v1/organization/{org}/projects/{project}/api_keys",
            {"type": "ephemeral", "expires_in": 7200},
            "expires_in",
        ),
        ("/v1/organization/{org}/projects/{project}/api_keys", {"expires_in": "soon"}, "expires_in"),
        ("/v1/organization/{org}/projects/{project}/api_keys", {"type": "service"}, "service_account_id"),
        # Found by Schemathesis (gateway/tests/test_schemathesis.py): accepted before, or stored wrongly.
        (
            "/v1/organization/{org}/projects/{project}/model_access",
            {"allowed_models": [0]},
            "allowed_models.0",
        ),
        ("/v1/organization/{org}/projects/{project}/budget", {"monthly_budget": ""}, "monthly_budget"),
        ("/v1/organization/{org}/projects/{project}/budget", {"monthly_budget": "1e3"}, "monthly_budget"),
        ("/v1/organization/{org}/projects/{project}/budget", {"monthly_budget": True}, "monthly_budget"),
        ("/v1/organization/{org}/projects/{project}/budget", {"spend": 1}, "spend"),
        ("/v1/organization/{org}/projects/{project}/rate_limits/rl_*", {"max_rpm": 1}, "max_rpm"),
        ("/v1/organization/{org}/projects/{project}/rate_limits/rl_", {}, "rate_limit_id"),
        (
            "/v1/organization/{org}/projects/{project}/users",
            {"email": "a@example.com", "user_id": "x"},
            "user_id",
        ),
        ("/v1/organization/{org}/api_keys", {"expires_in": 60, "expires_at": 4102444800}, "expires_in"),
    ],
)
def test_bad_input_is_400_with_param(cast: dict[str, Any], path: str, body: Any, param: str) -> None:
    before = (AuditLogEntry.objects.count(), ApiKey.objects.count(), Project.objects.count())
    url = path.format(org=cast["org"].public_id, project=cast["project"].public_id)
    response = call("post", url, cast["tokens"]["owner"], body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert (AuditLogEntry.objects.count(), ApiKey.objects.count(), Project.objects.count()) == before


def test_ephemeral_key_within_an_hour(cast: dict[str, Any]) -> None:
    path = f"/v1/organization/projects/{cast['project'].public_id}/api_keys"
    body = call("post", path, cast["tokens"]["admin_key"], {"type": "ephemeral", "expires_in": 3600}).json()
    assert body["type"] == "ephemeral"
    assert body["expires_at"] - body["created_at"] in (3599, 3600, 3601)


def test_bad_list_parameters(cast: dict[str, Any]) -> None:
    org = cast["org"].public_id
    token = cast["tokens"]["owner"]
    assert call("get", f"/v1/organization/{org}/projects?limit=0", token).json()["error"]["param"] == "limit"
    response = call("get", f"/v1/organization/{org}/audit_logs?effective_at[gte]=yesterday", token)
    assert response.json()["error"]["param"] == "effective_at[gte]"
    # Past what a datetime holds: a 400 naming the parameter, never a 500.
    for name in ("lte", "gte", "gt", "lt"):
        response = call(
            "get", f"/v1/organization/{org}/audit_logs?effective_at[{name}]=2470399429033250", token
        )
        assert response.status_code == 400, response.content
        assert response.json()["error"]["param"] == f"effective_at[{name}]"
    edge = call("get", f"/v1/organization/{org}/audit_logs?effective_at[lte]=253402300799", token)
    assert edge.status_code == 200, edge.content
    edge = call("get", f"/v1/organization/{org}/audit_logs?effective_at[gt]=253402300799", token)
    assert edge.status_code == 200, edge.content
    # A boolean is true or false (1/0): "null" read as false before.
    response = call("get", f"/v1/organization/{org}/projects?include_archived=null", token)
    assert (response.status_code, response.json()["error"]["param"]) == (400, "include_archived")
    assert call("get", f"/v1/organization/{org}/projects?include_archived=1", token).status_code == 200


def test_amounts_are_numbers_or_decimal_strings(cast: dict[str, Any]) -> None:
    path = f"/v1/organization/projects/{cast['project'].public_id}/budget"
    token = cast["tokens"]["admin_key"]
    rounded = call("post", path, token, {"monthly_budget": 12.345678, "monthly_soft_budget": "0.5"})
    assert rounded.status_code == 200, rounded.content
    assert (rounded.json()["monthly_budget"], rounded.json()["monthly_soft_budget"]) == (12.3457, 0.5)
    removed = call("post", path, token, {"monthly_budget": None})
    assert (removed.json()["monthly_budget"], removed.json()["monthly_soft_budget"]) == (None, 0.5)


def test_archived_project_refusals_have_their_own_code(cast: dict[str, Any]) -> None:
    project = cast["project"].public_id
    token = cast["tokens"]["admin_key"]
    assert call("post", f"/v1/organization/projects/{project}/archive", token).status_code == 200
    for path, body in (("api_keys", {}), ("service_accounts", {"name": "bot"})):
        response = call("post", f"/v1/organization/projects/{project}/{path}", token, body)
        assert response.status_code == 400, response.content
        assert (response.json()["error"]["param"], response.json()["error"]["code"]) == (
            "project_id",
            "project_archived",
        )


# --- Audit log -----------------------------------------------------------------------------------------


def test_changes_are_audited_without_secrets(cast: dict[str, Any]) -> None:
    org, token = cast["org"], cast["tokens"]["owner"]
    call(
        "patch",
        f"/v1/organization/{org.public_id}",
        token,
        {"name": "Renamed"},
        **{"X-Request-ID": "req-audit-1"},
    )
    project = call("post", f"/v1/organization/{org.public_id}/projects", token, {"name": "Audited"}).json()
    key = call(
        "post", f"/v1/organization/{org.public_id}/projects/{project['id']}/api_keys", token, {"name": "k"}
    ).json()
    log = call("get", f"/v1/organization/{org.public_id}/audit_logs?order=asc", token)
    assert log.status_code == 200
    entries = log.json()["data"]
    types = [entry["type"] for entry in entries]
    assert types[-3:] == ["organization.updated", "project.created", "api_key.created"]
    renamed = entries[-3]
    assert renamed["changes"] == {
        "name": {"before": renamed["changes"]["name"]["before"], "after": "Renamed"}
    }
    assert renamed["actor"] == {
        "type": "user",
        "id": cast["owner"].public_id,
        "user_id": cast["owner"].public_id,
    }
    assert renamed["target"] == {"type": "organization", "id": org.public_id}
    assert renamed["object"] == "organization.audit_log"
    assert isinstance(renamed["effective_at"], int)
    assert renamed["request_id"]
    key_row = ApiKey.objects.get(public_id=key["id"])
    dump = log.content.decode() + str(list(AuditLogEntry.objects.values()))
    assert key["value"] not in dump
    assert key_row.key_hash not in dump
    filtered = call(
        "get", f"/v1/organization/{org.public_id}/audit_logs?event_types[]=project.created", token
    ).json()["data"]
    assert [entry["target"]["id"] for entry in filtered] == [project["id"]]
    implied = f"/v1/organization/audit_logs?resource_ids[]={key['id']}"
    by_resource = call("get", implied, cast["tokens"]["admin_key"]).json()["data"]
    assert [entry["type"] for entry in by_resource] == ["api_key.created"]


# --- Query budgets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/organization/{org}/projects",
        "/v1/organization/{org}/users",
        "/v1/organization/{org}/api_keys",
        "/v1/organization/{org}/invites",
        "/v1/organization/{org}/audit_logs",
        "/v1/organization/{org}/projects/{project}/api_keys",
        "/v1/organization/{org}/projects/{project}/users",
        "/v1/organization/{org}/projects/{project}/service_accounts",
        "/v1/organization/admin_api_keys",
    ],
)
def test_list_query_budget(cast: dict[str, Any], django_assert_max_num_queries: Any, path: str) -> None:
    org, project, token = cast["org"], cast["project"], cast["tokens"]["admin_key"]
    for _ in range(5):  # rows must not add queries
        make_api_key(project=project)
        make_api_key(org=org, key_type=ApiKey.Type.ORGANIZATION)
        OrganizationMember.objects.create(organization=org, user=make_user(), role="reader")
        make_project(org=org)
    url = path.format(org=org.public_id, project=project.public_id)
    call("get", url, token)  # warm the key cache
    with django_assert_max_num_queries(6):
        response = call("get", url, token)
    assert response.status_code == 200
