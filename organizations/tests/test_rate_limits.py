"""Rate limits: the admin API and Django admin that set them, the principal that carries them,
and their enforcement in Redis (one process, two processes, and the per-process fallback)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from accounts.auth import AsgiHeaders, Principal, principal_from_headers
from accounts.services import token_pair_issue
from gateway.errors import RateLimited
from gateway.redis import sync_client
from organizations import keycache, ratelimits
from organizations.models import ApiKey, AuditLogEntry, OrganizationMember, ProjectRateLimit
from organizations.tests.factories import make_api_key, make_org, make_project, make_user
from tests.openai_spec import assert_valid

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    """Counters are keyed by primary keys, which a new test database hands out again."""

    def clear() -> None:
        ratelimits._local.clear()
        client = sync_client()
        if client is not None:
            for name in client.scan_iter("rl:*"):
                client.delete(name)

    clear()
    yield
    clear()


def call(method: str, path: str, token: str, body: Any = None, **headers: str) -> Any:
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    return getattr(Client(), method)(
        path, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}", **extra
    )


def principal(*rules: tuple[str, str, int, int, int], org: str = "org_ratelimittest") -> Principal:
    return Principal(
        kind="api_key",
        organization_id=1,
        organization_public_id=org,
        project_id=1,
        project_public_id="proj_ratelimittest",
        user_id=None,
        user_public_id=None,
        api_key_id=1,
        rate_limits=rules,
    )


# --- The admin API --------------------------------------------------------------------------------


@pytest.fixture
def cast() -> dict[str, Any]:
    owner, reader, powner = make_user(), make_user(), make_user()
    org = make_org(owner=owner)
    OrganizationMember.objects.create(organization=org, user=reader, role="reader")
    OrganizationMember.objects.create(organization=org, user=powner, role="reader")
    project = make_project(org=org, owner=powner)
    key, _ = make_api_key(project=project, user=powner)
    _, admin_raw = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=owner)
    return {
        "org": org,
        "project": project,
        "key": key,
        "admin": admin_raw,
        "owner": token_pair_issue(user=owner).access,
        "reader": token_pair_issue(user=reader).access,
        "project_owner": token_pair_issue(user=powner).access,
    }


def test_project_rate_limits_in_openai_shape(cast: dict[str, Any]) -> None:
    org, project = cast["org"], cast["project"]
    base = f"/v1/organization/{org.public_id}/projects/{project.public_id}/rate_limits"
    empty = call("get", base, cast["admin"]).json()
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}

    updated = call(
        "post",
        f"{base}/rl_fake-model",
        cast["admin"],
        {"max_requests_per_1_minute": 5, "max_tokens_per_1_minute": 1000},
        **{"X-Request-ID": "req-ratelimit-1"},
    )
    assert updated.status_code == 200, updated.content
    body = updated.json()
    assert body == {
        "object": "project.rate_limit",
        "id": "rl_fake-model",
        "model": "fake-model",
        "max_requests_per_1_minute": 5,
        "max_tokens_per_1_minute": 1000,
        "max_concurrent_streams": 0,
    }
    assert_valid("ProjectRateLimit", body)
    # fields left out keep their value
    again = call("post", f"{base}/rl_fake-model", cast["owner"], {"max_concurrent_streams": 2}).json()
    assert (again["max_requests_per_1_minute"], again["max_concurrent_streams"]) == (5, 2)
    call("post", f"{base}/rl_*", cast["owner"], {"max_requests_per_1_minute": 100})

    listed = call("get", f"/v1/organization/projects/{project.public_id}/rate_limits", cast["admin"]).json()
    assert_valid("ProjectRateLimitListResponse", listed)
    assert [row["id"] for row in listed["data"]] == ["rl_*", "rl_fake-model"]
    assert listed["first_id"] == "rl_*"
    page = call("get", f"{base}?limit=1&after=rl_*", cast["reader"]).json()
    assert [row["id"] for row in page["data"]] == ["rl_fake-model"]
    assert call("get", f"{base}/rl_fake-model", cast["reader"]).json() == again

    entry = AuditLogEntry.objects.get(action="rate_limit.created", target_id="rl_fake-model")
    assert entry.request_id == "req-ratelimit-1"
    assert entry.project_id == project.public_id
    assert entry.changes["max_requests_per_1_minute"] == {"before": None, "after": 5}

    deleted = call("delete", f"{base}/rl_fake-model", cast["owner"])
    assert deleted.json() == {"object": "project.rate_limit.deleted", "id": "rl_fake-model", "deleted": True}
    assert list(ProjectRateLimit.objects.values_list("model", flat=True)) == ["*"]
    assert call("get", f"{base}/rl_fake-model", cast["owner"]).status_code == 404


def test_rate_limit_roles_and_validation(cast: dict[str, Any]) -> None:
    base = f"/v1/organization/{cast['org'].public_id}/projects/{cast['project'].public_id}/rate_limits"
    for who in ("reader", "project_owner"):
        refused = call("post", f"{base}/rl_m", cast[who], {"max_requests_per_1_minute": 1})
        assert refused.status_code == 403, who
        assert refused.json()["error"]["type"] == "permission_error"
    negative = call("post", f"{base}/rl_m", cast["owner"], {"max_requests_per_1_minute": -1})
    assert negative.status_code == 400
    assert negative.json()["error"]["param"] == "max_requests_per_1_minute"
    assert call("post", f"{base}/m", cast["owner"], {}).json()["error"]["param"] == "rate_limit_id"
    # another organization's project is not there at all
    other = make_project()
    assert (
        call("get", f"/v1/organization/projects/{other.public_id}/rate_limits", cast["admin"]).status_code
        == 404
    )
    assert not ProjectRateLimit.objects.exists()


def test_key_rate_limits(cast: dict[str, Any]) -> None:
    key = cast["key"]
    org_base = f"/v1/organization/{cast['org'].public_id}"
    path = f"{org_base}/projects/{cast['project'].public_id}/api_keys/{key.public_id}/rate_limits"
    # A reader sees only their own keys: another member's key is not there for them.
    assert call("get", path, cast["reader"]).status_code == 404
    assert call("get", path, cast["project_owner"]).json() == {
        "object": "api_key.rate_limit",
        "api_key_id": key.public_id,
        "max_requests_per_1_minute": 0,
        "max_tokens_per_1_minute": 0,
        "max_concurrent_streams": 0,
    }
    assert call("post", path, cast["reader"], {"max_requests_per_1_minute": 3}).status_code == 404
    changed = call("post", path, cast["project_owner"], {"max_requests_per_1_minute": 3}).json()
    assert changed["max_requests_per_1_minute"] == 3
    key.refresh_from_db()
    assert key.max_requests_per_1_minute == 3
    assert AuditLogEntry.objects.filter(action="api_key.updated", target_id=key.public_id).exists()

    org_key, _ = make_api_key(org=cast["org"], key_type=ApiKey.Type.ORGANIZATION)
    org_path = f"{org_base}/api_keys/{org_key.public_id}/rate_limits"
    assert call("post", org_path, cast["reader"], {"max_tokens_per_1_minute": 9}).status_code == 404
    assert (
        call("post", org_path, cast["admin"], {"max_tokens_per_1_minute": 9}).json()[
            "max_tokens_per_1_minute"
        ]
        == 9
    )


# --- The principal carries its rules ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_principal_carries_limits_and_sees_changes(cast: dict[str, Any]) -> None:
    project = cast["project"]
    key, raw = make_api_key(project=project)
    headers = AsgiHeaders([(b"authorization", f"Bearer {raw}".encode())])
    assert principal_from_headers(headers).rate_limits == ()

    base = f"/v1/organization/projects/{project.public_id}/rate_limits"
    call("post", f"{base}/rl_m1", cast["admin"], {"max_requests_per_1_minute": 7})
    call(
        "post",
        f"/v1/organization/projects/{project.public_id}/api_keys/{key.public_id}/rate_limits",
        cast["admin"],
        {"max_concurrent_streams": 2},
    )
    # Redis was cleared on commit; the 1 s per-process tier is what other workers wait out, so
    # here it is emptied rather than waited for.
    keycache._local.clear()
    rules = principal_from_headers(headers).rate_limits
    assert sorted(rules) == sorted([(f"k{key.pk}", "*", 0, 0, 2), (f"p{project.pk}", "m1", 7, 0, 0)])

    # an organization key takes the limits of the project it selects
    _, org_raw = make_api_key(org=cast["org"], key_type=ApiKey.Type.ORGANIZATION)
    org_headers = AsgiHeaders(
        [(b"authorization", f"Bearer {org_raw}".encode()), (b"openai-project", project.public_id.encode())]
    )
    assert principal_from_headers(org_headers).rate_limits == ((f"p{project.pk}", "m1", 7, 0, 0),)


# --- Enforcement ---------------------------------------------------------------------------------------


async def test_requests_per_minute_admits_n_then_refuses() -> None:
    caller = principal(("p1", "*", 3, 0, 0))
    seen = []
    for _ in range(3):
        admission = await ratelimits.admit(caller, model="m", stream=False)
        seen.append(admission.headers["x-ratelimit-remaining-requests"])
        await admission.finish(total_tokens=0)
    assert seen == ["2", "1", "0"]
    assert admission.headers["x-ratelimit-limit-requests"] == "3"
    assert admission.headers["x-ratelimit-reset-requests"].endswith("s")
    with pytest.raises(RateLimited) as refused:
        await ratelimits.admit(caller, model="m", stream=False)
    err = refused.value
    assert (err.status, err.type, err.code) == (429, "rate_limit_error", "rate_limit_exceeded")
    assert 1 <= int(err.headers["Retry-After"]) <= 60
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert "Limit 3, Used 3" in err.message
    # other projects (other scopes) are not affected
    assert (await ratelimits.admit(principal(("p2", "*", 3, 0, 0)), model="m", stream=False)).headers


async def test_model_rules_apply_to_their_model_only() -> None:
    caller = principal(("p1", "m1", 1, 0, 0))
    await ratelimits.admit(caller, model="m1", stream=False)
    with pytest.raises(RateLimited):
        await ratelimits.admit(caller, model="m1", stream=False)
    # no rule for m2: nothing to check, nothing to send
    assert await ratelimits.admit(caller, model="m2", stream=False) is ratelimits.UNLIMITED


async def test_no_limits_cost_nothing(settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # any Redis call would fail loudly (and admit)
    admission = await ratelimits.admit(principal(), model="m", stream=True)
    assert admission is ratelimits.UNLIMITED
    assert admission.headers == {}
    await admission.finish(total_tokens=10)


async def test_token_limit_refuses_once_recorded_usage_passes_it() -> None:
    caller = principal(("k1", "*", 0, 100, 0))
    first = await ratelimits.admit(caller, model="m", stream=False)
    assert first.headers["x-ratelimit-remaining-tokens"] == "100"
    await first.finish(total_tokens=60)
    second = await ratelimits.admit(caller, model="m", stream=False)
    assert second.headers["x-ratelimit-remaining-tokens"] == "40"
    await second.finish(total_tokens=60)
    await second.finish(total_tokens=60)  # idempotent: counted once
    with pytest.raises(RateLimited) as refused:
        await ratelimits.admit(caller, model="m", stream=False)
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.value.headers["x-ratelimit-limit-tokens"] == "100"
    assert "tokens per min" in refused.value.message


async def test_finish_soon_is_counted_by_drain() -> None:
    caller = principal(("k3", "*", 0, 5, 1))
    admission = await ratelimits.admit(caller, model="m", stream=True)
    admission.finish_soon(total_tokens=7)  # from sync code, as the usage record calls it
    await ratelimits.drain()
    with pytest.raises(RateLimited) as refused:  # 7 tokens counted > 5; the stream slot is free
        await ratelimits.admit(caller, model="m", stream=True)
    assert "tokens per min" in refused.value.message


async def test_concurrent_streams_are_leased_and_given_back() -> None:
    caller = principal(("k1", "*", 0, 0, 2))
    first = await ratelimits.admit(caller, model="m", stream=True)
    second = await ratelimits.admit(caller, model="m", stream=True)
    assert await ratelimits.admit(caller, model="m", stream=False) is not None  # non-streams don't count
    with pytest.raises(RateLimited) as refused:
        await ratelimits.admit(caller, model="m", stream=True)
    assert refused.value.headers["Retry-After"] == "1"
    await first.finish(total_tokens=5)
    third = await ratelimits.admit(caller, model="m", stream=True)
    await second.finish(total_tokens=0)
    await third.finish(total_tokens=0)


async def test_key_and_project_limits_both_apply() -> None:
    caller = principal(("k1", "*", 2, 0, 0), ("p1", "*", 5, 0, 0))
    admission = await ratelimits.admit(caller, model="m", stream=False)
    assert admission.headers["x-ratelimit-limit-requests"] == "2"  # the tighter one is reported
    await ratelimits.admit(caller, model="m", stream=False)
    with pytest.raises(RateLimited) as refused:
        await ratelimits.admit(caller, model="m", stream=False)
    assert "this API key" in refused.value.message
    # a refused request was not counted against the project
    other_key = principal(("k2", "*", 10, 0, 0), ("p1", "*", 5, 0, 0))
    for _ in range(3):
        await ratelimits.admit(other_key, model="m", stream=False)
    with pytest.raises(RateLimited) as project_refused:
        await ratelimits.admit(other_key, model="m", stream=False)
    assert "project proj_ratelimittest" in project_refused.value.message


async def test_concurrent_admissions_in_one_process_hold_the_limit() -> None:
    caller = principal(("p9", "*", 10, 0, 0))

    async def attempt() -> bool:
        try:
            await ratelimits.admit(caller, model="m", stream=False)
        except RateLimited:
            return False
        return True

    results = await asyncio.gather(*(attempt() for _ in range(25)))
    assert sum(results) == 10


async def test_without_redis_limits_are_per_process(settings: Any) -> None:
    settings.REDIS_URL = ""
    caller = principal(("p1", "*", 2, 50, 1))
    first = await ratelimits.admit(caller, model="m", stream=True)
    with pytest.raises(RateLimited):
        await ratelimits.admit(caller, model="m", stream=True)  # one stream at a time
    await first.finish(total_tokens=60)
    with pytest.raises(RateLimited) as refused:  # 60 tokens recorded > 50
        await ratelimits.admit(caller, model="m", stream=False)
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "0"
    assert ratelimits._duration(61_000) == "1m1s"
    assert ratelimits._duration(1500) == "1.5s"
    assert ratelimits._duration(20) == "20ms"


_SCRIPT = r"""
import asyncio, json, os, sys, time
import django
django.setup()
from accounts.auth import Principal
from gateway.errors import RateLimited
from organizations import ratelimits

rules, attempts, go, ready = tuple(tuple(rule) for rule in json.loads(sys.argv[1])), int(sys.argv[2]), sys.argv[3], sys.argv[4]
caller = Principal(kind="api_key", organization_id=1, organization_public_id="org_twoprocesses",
                   project_id=1, project_public_id="proj_two", user_id=None, user_public_id=None,
                   rate_limits=rules)

async def attempt():
    try:
        await ratelimits.admit(caller, model="m", stream=False)
        return 1
    except RateLimited:
        return 0

async def main():
    await ratelimits.admit(Principal(**{**caller.__dict__, "rate_limits": (("warm", "*", 1000, 0, 0),)}),
                           model="m", stream=False)  # connect before the race
    open(ready, "w").close()
    while not os.path.exists(go):
        await asyncio.sleep(0.005)
    results = await asyncio.gather(*(attempt() for _ in range(attempts)))
    print(json.dumps({"admitted": sum(results)}), flush=True)

asyncio.run(main())
"""


def test_limit_holds_across_two_processes(tmp_path: Path) -> None:
    if not django_settings.REDIS_URL:
        pytest.skip("limits are shared through Redis; without REDIS_URL they are per process by design")
    limit, attempts = 10, 12
    go = tmp_path / "go"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "gateway.settings", "REDIS_URL": django_settings.REDIS_URL}
    rules = json.dumps([["p77", "*", limit, 0, 0]])
    ready = [tmp_path / f"ready{index}" for index in range(2)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, rules, str(attempts), str(go), str(flag)],
            cwd=django_settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    deadline = time.monotonic() + 60
    while not all(flag.exists() for flag in ready):  # both connected to Redis: start them together
        if time.monotonic() > deadline or any(process.poll() is not None for process in processes):
            for process in processes:
                process.kill()
            pytest.fail("the two processes did not get ready: " + processes[0].communicate()[1][-2000:])
        time.sleep(0.01)
    go.touch()
    admitted = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        admitted.append(json.loads(out.strip().splitlines()[-1])["admitted"])
    assert sum(admitted) == limit  # 24 attempts at once from two processes, exactly 10 admitted


# --- Django admin ---------------------------------------------------------------------------------


def _inline_management(prefix: str, total: int, initial: int = 0) -> dict[str, Any]:
    return {
        f"{prefix}-TOTAL_FORMS": total,
        f"{prefix}-INITIAL_FORMS": initial,
        f"{prefix}-MIN_NUM_FORMS": 0,
        f"{prefix}-MAX_NUM_FORMS": 1000,
    }


def test_django_admin_sets_limits_through_the_services(admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    project = make_project()
    key, _ = make_api_key(project=project)
    page = f"/admin/organizations/project/{project.pk}/change/"
    assert client.get(page).status_code == 200
    posted = client.post(
        page,
        {
            "organization": project.organization_id,
            "name": project.name,
            "status": "active",
            **_inline_management("members", 0),
            **_inline_management("rate_limits", 1),
            "rate_limits-0-model": "fake-model",
            "rate_limits-0-max_requests_per_1_minute": 4,
            "rate_limits-0-max_tokens_per_1_minute": 0,
            "rate_limits-0-max_concurrent_streams": 1,
            "rate_limits-0-project": project.pk,
        },
    )
    assert posted.status_code == 302, posted.content.decode()[-3000:]
    limit = ProjectRateLimit.objects.get(project=project)
    assert (limit.model, limit.max_requests_per_1_minute, limit.max_concurrent_streams) == (
        "fake-model",
        4,
        1,
    )
    assert AuditLogEntry.objects.filter(action="rate_limit.created", project_id=project.public_id).exists()

    key_page = f"/admin/organizations/apikey/{key.pk}/change/"
    assert client.get(key_page).status_code == 200
    changed = client.post(
        key_page,
        {"max_requests_per_1_minute": 9, "max_tokens_per_1_minute": 500, "max_concurrent_streams": 0},
    )
    assert changed.status_code == 302, changed.content.decode()[-3000:]
    key.refresh_from_db()
    assert (key.max_requests_per_1_minute, key.max_tokens_per_1_minute) == (9, 500)
    assert AuditLogEntry.objects.filter(action="api_key.updated", target_id=key.public_id).exists()


# --- Tool calls --------------------------------------------------------------------------------------


async def test_tool_calls_are_limited_per_key_and_per_project(settings: Any) -> None:
    settings.TOOL_CALLS_PER_MINUTE_PER_KEY = 2
    settings.TOOL_CALLS_PER_MINUTE_PER_PROJECT = 3
    caller = principal(("k1", "*", 1, 0, 0))  # a chat limit of 1/min: tool calls count apart
    for _ in range(2):
        await ratelimits.admit_tool_call(caller, tool="serper_search")
    with pytest.raises(RateLimited) as refused:
        await ratelimits.admit_tool_call(caller, tool="serper_search")
    assert refused.value.status == 429
    assert refused.value.message.startswith("Rate limit reached for tool calls per min")
    assert "serper_search" in refused.value.message
    assert "this API key" in refused.value.message
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    # chat is untouched by tool calls: its own first request of the minute passes
    await ratelimits.admit(caller, model="m", stream=False)
    # another key of the same project has its own two, then the project's three are spent
    other_key = dataclasses.replace(caller, api_key_id=2, rate_limits=())
    await ratelimits.admit_tool_call(other_key, tool="web_search")
    with pytest.raises(RateLimited) as project_refused:
        await ratelimits.admit_tool_call(other_key, tool="web_search")
    assert "project proj_ratelimittest" in project_refused.value.message


async def test_a_project_may_lower_its_tool_call_limit_never_raise_it(settings: Any) -> None:
    settings.TOOL_CALLS_PER_MINUTE_PER_KEY = 0
    settings.TOOL_CALLS_PER_MINUTE_PER_PROJECT = 3
    lowered = principal(("p1", ratelimits.TOOL_CALLS, 1, 0, 0))
    await ratelimits.admit_tool_call(lowered, tool="web_search")
    with pytest.raises(RateLimited):
        await ratelimits.admit_tool_call(lowered, tool="web_search")
    raised = principal(("p2", ratelimits.TOOL_CALLS, 1000, 0, 0), org="org_other")
    raised = dataclasses.replace(raised, project_id=2)
    for _ in range(3):
        await ratelimits.admit_tool_call(raised, tool="web_search")
    with pytest.raises(RateLimited):
        await ratelimits.admit_tool_call(raised, tool="web_search")
    # and a project rate limit named tool_calls never limits chat on other models
    await ratelimits.admit(lowered, model="m", stream=False)
