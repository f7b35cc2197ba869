"""Every Administration API route by every kind of caller → the expected status, over real HTTP.

One table (`MATRIX`) says it all. Rows are keyed on method and path only, never on view classes,
so the table survives a rewrite of the views. `test_every_route_has_a_row` walks Django's URL
resolver: a route under /v1/organization without a row, a method without a row, or a row
without a route fails it.

The callers, all aimed at organization X:
- owner, reader: X's members (JWT, `OpenAI-Organization: X`);
- project_owner, project_member: no role in X, owner or member of X's project P (JWT, header X);
- guest: a guest account, no tie to X (JWT, no header: its own organization is the default one);
- admin_key, organization_key: X's keys (made by X's owner); project_key (made by P's owner)
  and service_key: P's;
- other_organization: the admin key of another organization.

A row's path `/v1/organization[/{org}]/…` stands for two routes: the explicit form, where
guest and other_organization always get 404 (an organization they have no part in does not
exist for them), and the organization-implied form, where they act in their own organization
and the row's guest and other_organization columns apply.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.services import guest_create, token_pair_issue
from inference.models import Provider
from organizations import services
from organizations.models import ApiKey, OrganizationMember, ProjectMember, ProjectRateLimit
from organizations.tests.factories import make_api_key, make_org, make_project, make_user
from tests.live_server import LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)

CALLERS = (
    "owner",
    "reader",
    "project_owner",
    "project_member",
    "guest",
    "admin_key",
    "organization_key",
    "project_key",
    "service_key",
    "other_organization",
)
OUTSIDERS = ("guest", "other_organization")

# (method, path, body, statuses in CALLERS order). Placeholders are filled from a fresh cast.
# The organization/project/service keys get 403 everywhere: this API takes admin keys and JWTs.
MATRIX: list[tuple[str, str, dict[str, Any] | None, str]] = [
    # ---------------------------------------- own  read pown pmem gst  adm  orgk prjk svck other
    ("GET", "/v1/organization", None, "200 200 200 200 200 200 403 403 403 200"),
    ("POST", "/v1/organization", {"name": "New"}, "201 201 201 201 201 403 403 403 403 403"),
    ("GET", "/v1/organization/{org}", None, "200 200 200 200 404 200 403 403 403 404"),
    ("PATCH", "/v1/organization/{org}", {"description": "d"}, "200 403 403 403 404 200 403 403 403 404"),
    ("DELETE", "/v1/organization/{org}", None, "200 403 403 403 404 200 403 403 403 404"),
    ("GET", "/v1/organization/admin_api_keys", None, "200 403 403 403 403 200 403 403 403 200"),
    ("POST", "/v1/organization/admin_api_keys", {"name": "a"}, "201 403 403 403 403 201 403 403 403 201"),
    ("GET", "/v1/organization/admin_api_keys/{admin_key}", None, "200 403 403 403 403 200 403 403 403 404"),
    ("DELETE", "/v1/organization/admin_api_keys/{admin_key}", None, "200 403 403 403 403 200 403 403 403 404"),
    # No credential at all: the code from the e-mail is the proof.
    ("POST", "/v1/organization/invites/verification", {"code": "c" * 24}, "400 400 400 400 400 400 400 400 400 400"),
    # Organization keys: a reader sees only their own.
    ("GET", "/v1/organization[/{org}]/api_keys", None, "200 200 403 403 403 200 403 403 403 200"),
    ("POST", "/v1/organization[/{org}]/api_keys", {"name": "k"}, "201 403 403 403 403 201 403 403 403 201"),
    ("GET", "/v1/organization[/{org}]/api_keys/{org_key}", None, "200 404 403 403 403 200 403 403 403 404"),
    ("DELETE", "/v1/organization[/{org}]/api_keys/{org_key}", None, "200 403 403 403 403 200 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/api_keys/{org_key}/rate_limits", None, "200 404 403 403 403 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/api_keys/{org_key}/rate_limits", {"max_requests_per_1_minute": 5}, "200 404 403 403 403 200 403 403 403 404"),
    # Projects: readers see all, people with only projects see theirs.
    ("GET", "/v1/organization[/{org}]/projects", None, "200 200 200 200 200 200 403 403 403 200"),
    ("POST", "/v1/organization[/{org}]/projects", {"name": "p"}, "201 403 403 403 403 201 403 403 403 201"),
    ("GET", "/v1/organization[/{org}]/projects/{project}", None, "200 200 200 200 404 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/projects/{project}", {"name": "q"}, "200 403 403 403 404 200 403 403 403 404"),
    ("PATCH", "/v1/organization[/{org}]/projects/{project}", {"name": "q"}, "200 403 403 403 404 200 403 403 403 404"),
    ("DELETE", "/v1/organization[/{org}]/projects/{project}", None, "200 403 403 403 404 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/projects/{project}/archive", None, "200 403 403 403 404 200 403 403 403 404"),
    # Project keys: who manages the project sees all of them, anyone else only their own.
    ("GET", "/v1/organization[/{org}]/projects/{project}/api_keys", None, "200 200 200 200 404 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/projects/{project}/api_keys", {"name": "k"}, "201 403 201 201 404 201 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/projects/{project}/api_keys/{project_key}", None, "200 404 200 404 404 200 403 403 403 404"),
    ("DELETE", "/v1/organization[/{org}]/projects/{project}/api_keys/{project_key}", None, "200 404 200 404 404 200 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/projects/{project}/api_keys/{project_key}/rate_limits", None, "200 404 200 404 404 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/projects/{project}/api_keys/{project_key}/rate_limits", {"max_requests_per_1_minute": 5}, "200 404 200 404 404 200 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/projects/{project}/rate_limits", None, "200 200 200 200 404 200 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/projects/{project}/rate_limits/{rate_limit}", None, "200 200 200 200 404 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/projects/{project}/rate_limits/{rate_limit}", {"max_requests_per_1_minute": 5}, "200 403 403 403 404 200 403 403 403 404"),
    ("DELETE", "/v1/organization[/{org}]/projects/{project}/rate_limits/{rate_limit}", None, "200 403 403 403 404 200 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/projects/{project}/service_accounts", None, "200 200 200 200 404 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/projects/{project}/service_accounts", {"name": "s"}, "201 403 201 403 404 201 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/projects/{project}/service_accounts/{service_account}", None, "200 200 200 200 404 200 403 403 403 404"),
    ("DELETE", "/v1/organization[/{org}]/projects/{project}/service_accounts/{service_account}", None, "200 403 200 403 404 200 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/projects/{project}/users", None, "200 200 200 200 404 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/projects/{project}/users", {"user_id": "{reader_id}"}, "201 403 201 403 404 201 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/projects/{project}/users/{project_member_id}", None, "200 200 200 200 404 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/projects/{project}/users/{project_member_id}", {"role": "owner"}, "200 403 200 403 404 200 403 403 403 404"),
    ("PATCH", "/v1/organization[/{org}]/projects/{project}/users/{project_member_id}", {"role": "owner"}, "200 403 200 403 404 200 403 403 403 404"),
    # ...and a project member may leave.
    ("DELETE", "/v1/organization[/{org}]/projects/{project}/users/{project_member_id}", None, "200 403 200 200 404 200 403 403 403 404"),
    # Members: readers see them; direct adds only for people already in one of its projects.
    ("GET", "/v1/organization[/{org}]/users", None, "200 200 403 403 403 200 403 403 403 200"),
    ("POST", "/v1/organization[/{org}]/users", {"user_id": "{project_member_id}"}, "201 403 403 403 403 201 403 403 403 400"),
    ("GET", "/v1/organization[/{org}]/users/{reader_id}", None, "200 200 403 403 403 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/users/{reader_id}", {"role": "owner"}, "200 403 403 403 403 200 403 403 403 404"),
    ("PATCH", "/v1/organization[/{org}]/users/{reader_id}", {"role": "owner"}, "200 403 403 403 403 200 403 403 403 404"),
    # ...and a reader may leave.
    ("DELETE", "/v1/organization[/{org}]/users/{reader_id}", None, "200 200 403 403 403 200 403 403 403 404"),
    # Invites and the audit log: owners only.
    ("GET", "/v1/organization[/{org}]/invites", None, "200 403 403 403 403 200 403 403 403 200"),
    ("POST", "/v1/organization[/{org}]/invites", {"email": "invitee@example.com"}, "201 403 403 403 403 201 403 403 403 201"),
    ("GET", "/v1/organization[/{org}]/invites/{invite}", None, "200 403 403 403 403 200 403 403 403 404"),
    ("DELETE", "/v1/organization[/{org}]/invites/{invite}", None, "200 403 403 403 403 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/invites/{invite}/resend", None, "200 403 403 403 403 200 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/audit_logs", None, "200 403 403 403 403 200 403 403 403 200"),
    # Model allow-lists and budgets: read like the project's rate limits, changed by organization
    # owners (project) or project owners (a key).
    ("GET", "/v1/organization[/{org}]/projects/{project}/model_access", None, "200 200 200 200 404 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/projects/{project}/model_access", {"allowed_models": ["m*"]}, "200 403 403 403 404 200 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/projects/{project}/api_keys/{project_key}/model_access", None, "200 404 200 404 404 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/projects/{project}/api_keys/{project_key}/model_access", {"allowed_models": []}, "200 404 200 404 404 200 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/projects/{project}/budget", None, "200 200 200 200 404 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/projects/{project}/budget", {"monthly_budget": "5"}, "200 403 403 403 404 200 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/projects/{project}/api_keys/{project_key}/budget", None, "200 404 200 404 404 200 403 403 403 404"),
    ("POST", "/v1/organization[/{org}]/projects/{project}/api_keys/{project_key}/budget", {"monthly_budget": "1"}, "200 404 200 404 404 200 403 403 403 404"),
    # Model providers and usage (the inference app): owners only.
    ("GET", "/v1/organization/models/providers", None, "200 403 403 403 403 200 403 403 403 200"),
    ("POST", "/v1/organization/models/providers", {}, "400 403 403 403 403 400 403 403 403 400"),
    ("GET", "/v1/organization/models/providers/{provider}", None, "200 403 403 403 403 200 403 403 403 404"),
    ("PATCH", "/v1/organization/models/providers/{provider}", {"name": "n"}, "200 403 403 403 403 200 403 403 403 404"),
    ("DELETE", "/v1/organization/models/providers/{provider}", None, "200 403 403 403 403 200 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/usage/completions?start_time={hour_ago}", None, "200 403 404 404 404 200 403 403 403 200"),
    ("GET", "/v1/organization/{org}/usage?start_time={hour_ago}", None, "200 403 404 404 404 200 403 403 403 404"),
    ("GET", "/v1/organization[/{org}]/costs?start_time={hour_ago}", None, "200 403 404 404 404 200 403 403 403 200"),
]  # fmt: skip


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # a template: placeholders in braces
    body: dict[str, Any] | None
    expected: dict[str, int]


def _cases() -> list[Case]:
    """The table with every `[/{org}]` row expanded into its two routes."""
    cases: list[Case] = []
    for method, path, body, statuses in MATRIX:
        expected = dict(zip(CALLERS, (int(status) for status in statuses.split()), strict=True))
        if "[/{org}]" in path:
            cases.append(Case(method, path.replace("[/{org}]", ""), body, expected))
            explicit = {**expected, **dict.fromkeys(OUTSIDERS, 404)}
            cases.append(Case(method, path.replace("[/{org}]", "/{org}"), body, explicit))
        else:
            cases.append(Case(method, path, body, expected))
    return cases


CASES = _cases()


# --- Matching the table to the URL resolver --------------------------------------------------------


def _shape(template: str) -> str:
    """A path with every parameter as `{}` and no query: what a table row and a URL pattern share."""
    return re.sub(r"\{[^}]*\}", "{}", template.split("?")[0])


def _regex_shape(regex: str) -> str:
    """`^v1/organization/(?P<org_id>org_[0-9a-z]+)/usage$` → `/v1/organization/{}/usage`."""
    out, index = [], 0
    regex = regex.removeprefix("^").removesuffix("$").removesuffix(r"\Z")
    while index < len(regex):
        if regex.startswith("(?P<", index):
            depth = 0
            while True:  # skip to the group's closing parenthesis, nested groups included
                char = regex[index]
                if char == "\\":
                    index += 1
                elif char == "(":
                    depth += 1
                elif char == ")":
                    depth -= 1
                    if depth == 0:
                        break
                index += 1
            out.append("{}")
        elif regex[index] == "\\":
            index += 1
            out.append(regex[index])
        else:
            out.append(regex[index])
        index += 1
    return "/" + "".join(out)


def _pattern_shape(pattern: Any) -> str:
    route = str(pattern)
    if hasattr(pattern, "_route"):  # a path() route: <converter:name> parameters
        return "/" + re.sub(r"<[^>]+>", "{}", route)
    return _regex_shape(route)


def _route_shapes(patterns: list[Any], prefix: str = "") -> Iterator[str]:
    for entry in patterns:
        shape = prefix + _pattern_shape(entry.pattern).removeprefix("/")
        if isinstance(entry, URLResolver):
            yield from _route_shapes(entry.url_patterns, shape if shape.endswith("/") else shape + "/")
        elif isinstance(entry, URLPattern) and "(?P<format>" not in str(entry.pattern):
            yield shape  # (a DRF router's `.json` format-suffix twins are not routes of their own)


def _admin_route_shapes() -> set[str]:
    shapes = {("/" + shape.lstrip("/")) for shape in _route_shapes(get_resolver().url_patterns)}
    return {shape for shape in shapes if shape == "/v1/organization" or shape.startswith("/v1/organization/")}


# --- The cast ---------------------------------------------------------------------------------------


@dataclass
class Cast:
    values: dict[str, str]  # placeholder → id
    headers: dict[str, dict[str, str]]  # caller → request headers


def _bearer(token: str, organization: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if organization:
        headers["OpenAI-Organization"] = organization
    return headers


def _make_cast() -> Cast:
    owner, reader, powner, pmember = make_user(), make_user(), make_user(), make_user()
    org = make_org(owner=owner)
    OrganizationMember.objects.create(organization=org, user=reader, role=OrganizationMember.Role.READER)
    project = make_project(org=org, owner=powner)
    ProjectMember.objects.create(project=project, user=pmember, role=ProjectMember.Role.MEMBER)
    _, admin_raw = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=owner)
    admin_target, _ = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=owner)
    _, org_key_raw = make_api_key(org=org, key_type=ApiKey.Type.ORGANIZATION, user=owner)
    org_key_target, _ = make_api_key(org=org, key_type=ApiKey.Type.ORGANIZATION, user=owner)
    _, project_raw = make_api_key(project=project, user=powner)
    project_target, _ = make_api_key(project=project, user=powner)
    service_key, service_raw = make_api_key(project=project, key_type=ApiKey.Type.SERVICE)
    assert service_key.service_account is not None
    ProjectRateLimit.objects.create(project=project, model="*", max_requests_per_1_minute=100)
    invite = services.invite_create(
        organization=org, email="pending@example.com", role="reader", projects=[], actor=services.SYSTEM
    )
    provider = Provider.objects.create(name="Own", base_url="https://llm.example.com", organization=org)
    other = make_org()
    _, other_admin_raw = make_api_key(org=other, key_type=ApiKey.Type.ADMIN)
    guest = guest_create()
    x = org.public_id
    return Cast(
        values={
            "org": x,
            "project": project.public_id,
            "admin_key": admin_target.public_id,
            "org_key": org_key_target.public_id,
            "project_key": project_target.public_id,
            "service_account": service_key.service_account.public_id,
            "rate_limit": "rl_*",
            "invite": invite.public_id,
            "provider": provider.public_id,
            "reader_id": reader.public_id,
            "project_member_id": pmember.public_id,
            "hour_ago": str(int(time.time()) - 3600),
        },
        headers={
            "owner": _bearer(token_pair_issue(user=owner).access, x),
            "reader": _bearer(token_pair_issue(user=reader).access, x),
            "project_owner": _bearer(token_pair_issue(user=powner).access, x),
            "project_member": _bearer(token_pair_issue(user=pmember).access, x),
            "guest": _bearer(token_pair_issue(user=guest).access),
            "admin_key": _bearer(admin_raw),
            "organization_key": _bearer(org_key_raw),
            "project_key": _bearer(project_raw),
            "service_key": _bearer(service_raw),
            "other_organization": _bearer(other_admin_raw),
        },
    )


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, dict):
        return {key: _fill(item, values) for key, item in value.items()}
    return value


@pytest.fixture(scope="module")
def gateway() -> Iterator[LiveGateway]:
    live = LiveGateway().start()
    yield live
    live.stop()


# --- The tests ---------------------------------------------------------------------------------------


def test_every_route_has_a_row(gateway: LiveGateway) -> None:
    """Rows and routes match one to one, and each route's methods (its `Allow` header) are rows."""
    rows: dict[str, set[str]] = {}
    templates: dict[str, str] = {}
    for case in CASES:
        rows.setdefault(_shape(case.path), set()).add(case.method)
        templates[_shape(case.path)] = case.path
    routes = _admin_route_shapes()
    assert sorted(routes - set(rows)) == [], "routes under /v1/organization without a row in MATRIX"
    assert sorted(set(rows) - routes) == [], "rows in MATRIX for routes that do not exist"

    cast = _make_cast()
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for shape, methods in sorted(rows.items()):
            url = _fill(templates[shape], cast.values)
            allow = client.options(url, headers=cast.headers["owner"]).headers.get("Allow", "")
            served = {method.strip() for method in allow.split(",") if method.strip()} - {"OPTIONS", "HEAD"}
            assert served == methods, (
                f"{shape}: the route serves {sorted(served)}, MATRIX has {sorted(methods)}"
            )


def _envelope_ok(response: httpx.Response) -> bool:
    body = response.json()
    return set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("caller", CALLERS)
def test_authorization_matrix(gateway: LiveGateway, caller: str) -> None:
    mismatches: list[str] = []
    cast = _make_cast()
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for case in CASES:
            url = _fill(case.path, cast.values)
            response = client.request(
                case.method, url, json=_fill(case.body, cast.values), headers=cast.headers[caller]
            )
            expected = case.expected[caller]
            if response.status_code != expected:
                mismatches.append(
                    f"{case.method} {case.path}: {response.status_code} (expected {expected}) "
                    f"{response.text[:160]}"
                )
            elif response.status_code >= 400 and not _envelope_ok(response):
                mismatches.append(
                    f"{case.method} {case.path}: not an OpenAI error body: {response.text[:160]}"
                )
            if case.method != "GET" and response.status_code < 300:
                cast = _make_cast()  # it changed something: the next row starts afresh
    assert mismatches == [], f"{caller}:\n" + "\n".join(mismatches)
