"""The authorization and account findings of the security review, each as the attack (now
refused) and the legitimate use (still working), over real HTTP.

- A guest's view of the Administration API, route by route: their own projects, nothing else.
- Sign-up hands out no organization role, and a migration takes back the ones it used to.
- A demoted owner's admin and organization keys stop, on every worker, at once; so do the keys
  of a member who is removed, and of a user disabled in Django admin.
- Owners add only people who already share the organization; the answer never tells whether an
  e-mail address has an account. Invites still reach existing users.
- Logout is POST only. An audit-log time filter past year 9999 is a 400, not a 500.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from django.apps import apps
from django.test import Client

from accounts.models import User
from accounts.services import token_pair_issue
from organizations import services
from organizations.models import (
    ApiKey,
    AuditLogEntry,
    Invite,
    Organization,
    OrganizationMember,
    Project,
    ProjectMember,
)
from organizations.services.invites import invite_secret_hash
from organizations.tests.factories import make_api_key, make_org, make_project, make_user
from tests.live_server import GatewayProcess, LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def gateway() -> Iterator[LiveGateway]:
    live = LiveGateway().start()
    yield live
    live.stop()


def _http(base_url: str, token: str | None = None, **headers: str) -> httpx.Client:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=base_url, headers=headers, timeout=30)


def _statuses(client: httpx.Client, routes: list[tuple[str, str]]) -> dict[str, int]:
    return {f"{method} {path}": client.request(method, path).status_code for method, path in routes}


# --- A guest's view ------------------------------------------------------------------------------


def test_a_guest_sees_only_their_own_projects(gateway: LiveGateway) -> None:
    default = services.organization_ensure_default()
    owner = make_user()
    services.organization_member_set(organization=default, user=owner, role=OrganizationMember.Role.OWNER)
    make_api_key(org=default, key_type=ApiKey.Type.ADMIN, user=owner)
    make_api_key(org=default, key_type=ApiKey.Type.ORGANIZATION, user=owner)
    services.invite_create(
        organization=default,
        email="future-owner@example.com",
        role="owner",
        projects=[],
        actor=services.SYSTEM,
    )
    neighbour = make_user()  # another user, with their own Default Project here
    neighbours_project = Project.objects.get(members__user=neighbour)

    signed_up = httpx.post(f"{gateway.url}/v1/auth/guest-login", timeout=15)
    assert signed_up.status_code == 200
    guest = User.objects.get(is_guest=True)
    assert not OrganizationMember.objects.filter(user=guest).exists()  # no organization role
    own_project = Project.objects.get(members__user=guest, members__role=ProjectMember.Role.OWNER)
    org, mine, theirs = default.public_id, own_project.public_id, neighbours_project.public_id

    with _http(gateway.url, signed_up.json()["access_token"]) as client:
        # Route by route: what the organization's members, invites, keys and log look like to them.
        refused = [
            ("GET", f"/v1/organization/{org}/users"),
            ("GET", "/v1/organization/users"),
            ("GET", f"/v1/organization/users/{owner.public_id}"),
            ("GET", f"/v1/organization/{org}/invites"),
            ("GET", "/v1/organization/invites"),
            ("GET", "/v1/organization/admin_api_keys"),
            ("GET", f"/v1/organization/{org}/api_keys"),
            ("GET", "/v1/organization/api_keys"),
            ("GET", f"/v1/organization/{org}/audit_logs"),
            ("GET", "/v1/organization/models/providers"),
            ("POST", "/v1/organization/projects"),
        ]
        assert _statuses(client, refused) == {f"{m} {p}": 403 for m, p in refused}
        unseen = [
            ("GET", f"/v1/organization/projects/{theirs}"),
            ("GET", f"/v1/organization/projects/{theirs}/users"),
            ("GET", f"/v1/organization/projects/{theirs}/api_keys"),
            ("GET", f"/v1/organization/projects/{theirs}/service_accounts"),
            ("GET", f"/v1/organization/projects/{theirs}/rate_limits"),
            ("GET", f"/v1/organization/{org}/usage/completions?start_time=0"),
        ]
        assert _statuses(client, unseen) == {f"{m} {p}": 404 for m, p in unseen}

        # What they do see: the organization's name and their own project, with only themselves.
        organizations = client.get("/v1/organization").json()["data"]
        assert [o["id"] for o in organizations] == [org]
        assert client.get(f"/v1/organization/{org}").json()["name"] == default.name
        assert [p["id"] for p in client.get("/v1/organization/projects").json()["data"]] == [mine]
        members = client.get(f"/v1/organization/projects/{mine}/users").json()["data"]
        assert [m["id"] for m in members] == [guest.public_id]
        # ...and the legitimate use: a key for their own project, which works.
        created = client.post(f"/v1/organization/projects/{mine}/api_keys", json={"name": "mine"})
        assert created.status_code == 201, created.text
        assert [k["id"] for k in client.get(f"/v1/organization/projects/{mine}/api_keys").json()["data"]] == [
            created.json()["id"]
        ]
        with _http(gateway.url, created.json()["value"]) as keyed:
            assert keyed.get("/v1/models").status_code == 200
        # A guest may still found an organization of their own, and owns it.
        founded = client.post("/v1/organization", json={"name": "Guest Inc"})
        assert founded.status_code == 201
        assert client.get(f"/v1/organization/{founded.json()['id']}/users").status_code == 200


def test_the_migration_removes_only_automatic_reader_memberships() -> None:
    default = services.organization_ensure_default()
    automatic, added, invited, owner = make_user(), make_user(), make_user(), make_user()
    for user in (automatic, added, invited):
        OrganizationMember.objects.create(organization=default, user=user, role="reader")
    OrganizationMember.objects.create(organization=default, user=owner, role="owner")
    AuditLogEntry.objects.create(
        organization=default,
        action="organization.user.added",
        actor_type="user",
        target_type="organization.user",
        target_id=added.public_id,
    )
    Invite.objects.create(
        organization=default,
        email=invited.email.upper(),
        role="reader",
        status=Invite.Status.ACCEPTED,
        expires_at=default.created_at,
    )
    other = make_org()
    OrganizationMember.objects.create(organization=other, user=automatic, role="reader")

    migration = importlib.import_module("organizations.migrations.0004_remove_automatic_reader_memberships")
    migration.remove_automatic_readers(apps, None)

    remaining = set(OrganizationMember.objects.filter(organization=default).values_list("user_id", flat=True))
    assert remaining == {added.pk, invited.pk, owner.pk}
    assert OrganizationMember.objects.filter(organization=other, user=automatic).exists()  # not the default


# --- Keys act with their owner's current role, on every worker -----------------------------------


@pytest.fixture(scope="module")
def workers(django_db_setup: None, django_db_blocker: Any) -> Iterator[GatewayProcess]:
    with django_db_blocker.unblock():
        started = GatewayProcess(database=True, workers=2, needs_redis=True).start()
    yield started
    started.stop()


def _status(base_url: str, token: str, path: str) -> int:
    # A new connection each time, so the requests spread over both workers.
    return httpx.get(
        f"{base_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=15
    ).status_code


def _every_worker_says(base_url: str, token: str, path: str, status: int) -> None:
    """Ten answers in a row with `status`, within a deadline: each worker may keep a key for
    its one-second local cache after the change, never longer."""
    deadline = time.monotonic() + 5
    streak = 0
    while streak < 10:
        assert time.monotonic() < deadline, f"{path} still answers otherwise"
        streak = streak + 1 if _status(base_url, token, path) == status else 0


def _warm(base_url: str, token: str, path: str) -> None:
    assert [_status(base_url, token, path) for _ in range(6)] == [200] * 6  # cached on both workers


def test_a_demoted_owner_keeps_no_owner_power(workers: GatewayProcess) -> None:
    alice, bob = make_user(), make_user()
    org = make_org(owner=alice)
    OrganizationMember.objects.create(organization=org, user=bob, role="owner")
    project = make_project(org=org, owner=alice)
    _, alice_admin = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=alice)
    _, alice_org_key = make_api_key(org=org, key_type=ApiKey.Type.ORGANIZATION, user=alice)
    _, alice_project_key = make_api_key(project=project, user=alice)
    _, bob_admin = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=bob)
    users = f"/v1/organization/{org.public_id}/users"
    _warm(workers.url, alice_admin, users)
    _warm(workers.url, alice_org_key, "/v1/models")

    demoted = httpx.post(
        f"{workers.url}{users}/{alice.public_id}",
        json={"role": "reader"},
        headers={"Authorization": f"Bearer {bob_admin}"},
        timeout=15,
    )
    assert demoted.status_code == 200, demoted.text

    _every_worker_says(workers.url, alice_admin, users, 401)
    _every_worker_says(workers.url, alice_org_key, "/v1/models", 401)
    assert (
        ApiKey.objects.filter(owner_user=alice, key_type__in=["admin", "organization"], enabled=True).count()
        == 0
    )
    # Her JWT acts as the reader she now is; her project key, as the project owner she still is.
    alice_jwt = token_pair_issue(user=alice).access
    assert _status(workers.url, alice_jwt, users) == 200
    assert _status(workers.url, alice_jwt, f"/v1/organization/{org.public_id}/audit_logs") == 403
    assert _status(workers.url, alice_project_key, "/v1/models") == 200
    # The remaining owner's key is untouched, and promoting Alice again does not revive hers.
    assert _status(workers.url, bob_admin, users) == 200
    services.organization_member_update(
        member=OrganizationMember.objects.get(organization=org, user=alice),
        role="owner",
        actor=services.SYSTEM,
    )
    assert _status(workers.url, alice_admin, users) == 401


def test_a_removed_member_keys_stop_everywhere(workers: GatewayProcess) -> None:
    owner, carol = make_user(), make_user()
    org = make_org(owner=owner)
    OrganizationMember.objects.create(organization=org, user=carol, role="owner")
    project = make_project(org=org, owner=carol)
    _, carol_admin = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=carol)
    _, carol_project_key = make_api_key(project=project, user=carol)
    _, owner_admin = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=owner)
    users = f"/v1/organization/{org.public_id}/users"
    _warm(workers.url, carol_admin, users)
    _warm(workers.url, carol_project_key, "/v1/models")

    removed = httpx.delete(
        f"{workers.url}{users}/{carol.public_id}",
        headers={"Authorization": f"Bearer {owner_admin}"},
        timeout=15,
    )
    assert removed.status_code == 200, removed.text

    _every_worker_says(workers.url, carol_admin, users, 401)
    _every_worker_says(workers.url, carol_project_key, "/v1/models", 401)
    assert _status(workers.url, owner_admin, users) == 200


def test_a_user_disabled_in_django_admin_loses_their_keys_at_once(
    workers: GatewayProcess, admin_user: Any
) -> None:
    dave = make_user(name="Dave")
    org = make_org(owner=dave)
    project = make_project(org=org, owner=dave)
    _, dave_admin = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=dave)
    _, dave_project_key = make_api_key(project=project, user=dave)
    users = f"/v1/organization/{org.public_id}/users"
    _warm(workers.url, dave_admin, users)
    _warm(workers.url, dave_project_key, "/v1/models")

    staff = Client()
    staff.force_login(admin_user)
    form = {
        "email": dave.email,
        "name": dave.name,
        # is_active left out: the unticked "enabled" box
        "socialaccount_set-TOTAL_FORMS": "0",
        "socialaccount_set-INITIAL_FORMS": "0",
        "socialaccount_set-MIN_NUM_FORMS": "0",
        "socialaccount_set-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    saved = staff.post(f"/admin/accounts/user/{dave.pk}/change/", form)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert User.objects.get(pk=dave.pk).is_active is False

    _every_worker_says(workers.url, dave_admin, users, 401)
    _every_worker_says(workers.url, dave_project_key, "/v1/models", 401)

    # Enabled again, the keys (never revoked) work again.
    saved = staff.post(f"/admin/accounts/user/{dave.pk}/change/", {**form, "is_active": "on"})
    assert saved.status_code == 302
    _every_worker_says(workers.url, dave_project_key, "/v1/models", 200)


# --- Adding members --------------------------------------------------------------------------------


def test_direct_adds_reveal_nothing_and_invites_still_reach_existing_users(
    gateway: LiveGateway, settings: Any, mailoutbox: list[Any]
) -> None:
    owner = make_user()
    org = make_org(owner=owner)
    stranger = make_user(email="stranger@example.com")  # registered, shares nothing with org
    colleague = make_user()
    make_project(org=org, owner=colleague)  # shares the organization through a project
    users = f"/v1/organization/{org.public_id}/users"

    with _http(gateway.url, token_pair_issue(user=owner).access) as client:
        registered = client.post(users, json={"email": "stranger@example.com"})
        unregistered = client.post(users, json={"email": "nobody-here@example.com"})
        assert registered.status_code == unregistered.status_code == 400
        assert registered.json() == unregistered.json()
        assert registered.json()["error"]["param"] == "email"
        by_id = client.post(users, json={"user_id": stranger.public_id})
        no_such_id = client.post(users, json={"user_id": "user_doesnotexist000000000000"})
        assert by_id.json() == no_such_id.json()
        assert not OrganizationMember.objects.filter(organization=org, user=stranger).exists()

        # Someone already in one of its projects can be given a role directly...
        assert client.post(users, json={"email": colleague.email}).status_code == 201
        # ...and an existing user joins by the invite they accept themselves.
        invite = client.post(f"/v1/organization/{org.public_id}/invites", json={"email": stranger.email})
        assert invite.status_code == 201, invite.text

    code = "known-code-for-the-test"
    Invite.objects.filter(public_id=invite.json()["id"]).update(secret_hash=invite_secret_hash(code))
    accepted = httpx.post(
        f"{gateway.url}/v1/organization/invites/verification", json={"code": code}, timeout=15
    )
    assert accepted.status_code == 200, accepted.text
    assert OrganizationMember.objects.filter(organization=org, user=stranger, role="reader").exists()


def test_project_adds_answer_alike_for_registered_and_unknown_addresses(gateway: LiveGateway) -> None:
    owner = make_user()
    org = make_org(owner=owner)
    project = make_project(org=org, owner=owner)
    make_user(email="elsewhere@example.com")
    path = f"/v1/organization/{org.public_id}/projects/{project.public_id}/users"
    with _http(gateway.url, token_pair_issue(user=owner).access) as client:
        registered = client.post(path, json={"email": "elsewhere@example.com"})
        unregistered = client.post(path, json={"email": "ghost@example.com"})
    assert registered.status_code == unregistered.status_code == 400
    assert registered.json() == unregistered.json()


# --- Logout and the audit log ----------------------------------------------------------------------


def test_logout_by_get_is_refused_and_post_works(gateway: LiveGateway) -> None:
    signed_in = httpx.post(f"{gateway.url}/v1/auth/guest-login", timeout=15)
    cookie = {"jan_refresh_token": signed_in.cookies["jan_refresh_token"]}
    refused = httpx.get(f"{gateway.url}/v1/auth/logout", cookies=cookie, timeout=15)
    assert refused.status_code == 405
    assert refused.headers["Allow"] == "POST, OPTIONS"
    assert refused.json()["error"]["type"] == "invalid_request_error"
    # The cross-site GET ended nothing: the session still refreshes, and POST signs out.
    rotated = httpx.get(f"{gateway.url}/v1/auth/refresh-token", cookies=cookie, timeout=15)
    assert rotated.status_code == 200
    cookie = {"jan_refresh_token": rotated.cookies["jan_refresh_token"]}
    assert httpx.post(f"{gateway.url}/v1/auth/logout", cookies=cookie, timeout=15).status_code == 200
    assert httpx.get(f"{gateway.url}/v1/auth/refresh-token", cookies=cookie, timeout=15).status_code == 401


def test_a_replayed_refresh_token_ends_its_whole_family(gateway: LiveGateway) -> None:
    signed_in = httpx.post(f"{gateway.url}/v1/auth/guest-login", timeout=15)
    first = signed_in.cookies["jan_refresh_token"]
    refresh: Callable[[str], httpx.Response] = lambda token: httpx.get(  # noqa: E731
        f"{gateway.url}/v1/auth/refresh-token", cookies={"jan_refresh_token": token}, timeout=15
    )
    second = refresh(first).cookies["jan_refresh_token"]
    third = refresh(second).cookies["jan_refresh_token"]  # the victim's current token
    assert refresh(first).status_code == 401  # the thief's old copy comes back...
    assert refresh(third).status_code == 401  # ...and the victim's successor is dead too
    # A separate sign-in of the same browser is another family, unaffected.
    other = httpx.post(f"{gateway.url}/v1/auth/guest-login", timeout=15).cookies["jan_refresh_token"]
    assert refresh(other).status_code == 200


def test_audit_log_time_past_year_9999_is_a_400(gateway: LiveGateway) -> None:
    owner = make_user()
    org = make_org(owner=owner)
    with _http(gateway.url, token_pair_issue(user=owner).access) as client:
        response = client.get(
            "/v1/organization/audit_logs?effective_at[lte]=2470399429033250",
            headers={"OpenAI-Organization": org.public_id},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "effective_at[lte]"
        fine = client.get(
            "/v1/organization/audit_logs?effective_at[lte]=1700000000",
            headers={"OpenAI-Organization": org.public_id},
        )
        assert fine.status_code == 200


def test_no_organization_is_left_without_a_default() -> None:
    """Sign-up still works on an empty database: the default organization is created on demand."""
    Organization.objects.all().delete()
    user = make_user()
    assert Project.objects.filter(members__user=user, organization__is_default=True).exists()
    assert not OrganizationMember.objects.filter(user=user).exists()
