"""Usage reports (OpenAI's usage-API shape) from the usage rows: buckets, grouping, filters,
pages, access, the Django admin summary, and rows written by real chat calls."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from django.db import close_old_connections
from django.db.models import Count, Sum
from django.test import Client

from accounts.services import token_pair_issue
from inference.models import Provider, UsageRecord
from organizations.models import ApiKey, OrganizationMember
from organizations.tests.factories import make_api_key, make_org, make_project, make_user
from tests.live_server import LiveGateway
from tests.openai_spec import assert_valid

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, tzinfo=UTC)
S0 = int(T0.timestamp())


def get(path: str, token: str, **params: Any) -> Any:
    return Client().get(path, params, HTTP_AUTHORIZATION=f"Bearer {token}")


def row(
    org: Any, project: Any, key: Any, model: str, at: datetime, prompt: int, completion: int, cached: int = 0
) -> UsageRecord:
    return UsageRecord.objects.create(
        organization=org,
        project=project,
        api_key_id=key.pk,
        user_id=key.owner_user_id,
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cached_tokens=cached,
        outcome=UsageRecord.Outcome.SUCCESS,
        created_at=at,
    )


@pytest.fixture
def usage() -> dict[str, Any]:
    owner = make_user()
    org = make_org(owner=owner)
    p1, p2 = make_project(org=org), make_project(org=org)
    k1, _ = make_api_key(project=p1, user=owner)
    k2, _ = make_api_key(project=p2, user=owner)
    _, admin = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=owner)
    row(org, p1, k1, "model-a", T0 + timedelta(seconds=10), 10, 5, cached=4)
    row(org, p1, k1, "model-b", T0 + timedelta(seconds=70), 3, 4)
    row(org, p2, k2, "model-a", T0 + timedelta(hours=1, seconds=5), 7, 1)
    row(org, p1, k1, "model-a", T0 + timedelta(days=1, seconds=100), 2, 2)
    row(org, p1, k1, "model-a", T0 - timedelta(seconds=5), 100, 100)  # before start_time
    other = make_org()
    other_project = make_project(org=other)
    other_key, other_admin = make_api_key(org=other, key_type=ApiKey.Type.ADMIN)
    row(other, other_project, other_key, "model-a", T0 + timedelta(seconds=20), 50, 50)  # not this org
    return {
        "org": org,
        "p1": p1,
        "p2": p2,
        "k1": k1,
        "k2": k2,
        "admin": admin,
        "owner": owner,
        "other_admin": other_admin,
    }


def totals(page: dict[str, Any]) -> tuple[int, int, int]:
    results = [result for bucket in page["data"] for result in bucket["results"]]
    return (
        sum(r["input_tokens"] for r in results),
        sum(r["output_tokens"] for r in results),
        sum(r["num_model_requests"] for r in results),
    )


def test_hour_buckets_without_grouping(usage: dict[str, Any]) -> None:
    path = f"/v1/organization/{usage['org'].public_id}/usage/completions"
    response = get(path, usage["admin"], start_time=S0, end_time=S0 + 7200, bucket_width="1h")
    assert response.status_code == 200, response.content
    page = response.json()
    assert_valid("UsageResponse", page)
    assert page["has_more"] is False
    assert page["next_page"] is None
    assert [(b["start_time"], b["end_time"]) for b in page["data"]] == [
        (S0, S0 + 3600),
        (S0 + 3600, S0 + 7200),
    ]
    first, second = (bucket["results"] for bucket in page["data"])
    assert first == [
        {
            "object": "organization.usage.completions.result",
            "input_tokens": 13,
            "output_tokens": 9,
            "input_cached_tokens": 4,  # of the 13 input tokens
            "input_audio_tokens": 0,
            "output_audio_tokens": 0,
            "num_model_requests": 2,
            "project_id": None,
            "user_id": None,
            "api_key_id": None,
            "model": None,
            "batch": None,
        }
    ]
    assert (second[0]["input_tokens"], second[0]["num_model_requests"]) == (7, 1)


def test_day_buckets_grouped_add_up_to_the_rows(usage: dict[str, Any]) -> None:
    org, p1, p2 = usage["org"], usage["p1"], usage["p2"]
    page = get(
        "/v1/organization/usage/completions",  # the admin key's own organization
        usage["admin"],
        start_time=S0,
        end_time=S0 + 2 * 86400,
        group_by=["model", "project_id"],
    ).json()
    assert_valid("UsageResponse", page)
    day1 = {
        (r["model"], r["project_id"]): (r["input_tokens"], r["output_tokens"])
        for r in page["data"][0]["results"]
    }
    assert day1 == {
        ("model-a", p1.public_id): (10, 5),
        ("model-a", p2.public_id): (7, 1),
        ("model-b", p1.public_id): (3, 4),
    }
    assert [(r["model"], r["input_tokens"]) for r in page["data"][1]["results"]] == [("model-a", 2)]
    recorded = UsageRecord.objects.filter(
        organization=org, created_at__gte=T0, created_at__lt=T0 + timedelta(days=2)
    ).aggregate(i=Sum("prompt_tokens"), o=Sum("completion_tokens"), n=Count("pk"))
    assert totals(page) == (recorded["i"], recorded["o"], recorded["n"]) == (22, 12, 4)

    by_key = get(
        f"/v1/organization/{org.public_id}/usage",  # the short form answers the same
        usage["admin"],
        start_time=S0,
        end_time=S0 + 86400,
        group_by="api_key_id,user_id",
    ).json()
    keys = {(r["api_key_id"], r["user_id"]): r["num_model_requests"] for r in by_key["data"][0]["results"]}
    owner = usage["owner"].public_id
    assert keys == {(usage["k1"].public_id, owner): 2, (usage["k2"].public_id, owner): 1}


def test_filters(usage: dict[str, Any]) -> None:
    path = f"/v1/organization/{usage['org'].public_id}/usage/completions"
    window = {"start_time": S0, "end_time": S0 + 86400}
    assert totals(get(path, usage["admin"], **window, project_ids=usage["p2"].public_id).json()) == (7, 1, 1)
    assert totals(get(path, usage["admin"], **window, **{"models[]": "model-b"}).json()) == (3, 4, 1)
    assert totals(get(path, usage["admin"], **window, api_key_ids=usage["k1"].public_id).json()) == (13, 9, 2)
    assert totals(get(path, usage["admin"], **window, batch="true").json()) == (0, 0, 0)


def test_pages_of_minute_buckets(usage: dict[str, Any]) -> None:
    path = f"/v1/organization/{usage['org'].public_id}/usage/completions"
    params = {"start_time": S0 + 30, "end_time": S0 + 300, "bucket_width": "1m", "limit": 2}
    first = get(path, usage["admin"], **params).json()
    # the first bucket starts at start_time; rows before it (second 10) do not count
    assert [b["start_time"] for b in first["data"]] == [S0 + 30, S0 + 60]
    assert first["has_more"] is True
    assert first["next_page"] == f"page_{S0 + 120}"
    assert totals(first) == (3, 4, 1)
    pages, cursor = [first], first["next_page"]
    while cursor:
        following = get(path, usage["admin"], **params, page=cursor).json()
        pages.append(following)
        cursor = following["next_page"]
    starts = [b["start_time"] for page in pages for b in page["data"]]
    assert starts == [S0 + 30, S0 + 60, S0 + 120, S0 + 180, S0 + 240]
    assert pages[-1]["data"][-1]["end_time"] == S0 + 300


def test_access_and_validation(usage: dict[str, Any]) -> None:
    org = usage["org"]
    path = f"/v1/organization/{org.public_id}/usage/completions"
    reader = make_user()
    OrganizationMember.objects.create(organization=org, user=reader, role="reader")
    refused = get(path, token_pair_issue(user=reader).access, start_time=S0)
    assert refused.status_code == 403
    assert get(path, token_pair_issue(user=usage["owner"]).access, start_time=S0).status_code == 200
    assert get(path, usage["other_admin"], start_time=S0).status_code == 404
    _, project_key = make_api_key(project=usage["p1"])
    assert get(path, project_key, start_time=S0).json()["error"]["code"] == "admin_key_required"
    for params, param in (
        ({}, "start_time"),
        ({"start_time": "soon"}, "start_time"),
        ({"start_time": S0, "bucket_width": "2h"}, "bucket_width"),
        ({"start_time": S0, "group_by": "service_level"}, "group_by"),
        ({"start_time": S0, "bucket_width": "1d", "limit": 32}, "limit"),
        ({"start_time": S0, "end_time": S0}, "end_time"),
        ({"start_time": S0, "page": "page_12"}, "page"),
    ):
        response = get(path, usage["admin"], **params)
        assert response.status_code == 400, params
        assert response.json()["error"]["param"] == param


def test_admin_shows_usage_by_project(usage: dict[str, Any], admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    page = client.get("/admin/inference/usagerecord/", {"project__id__exact": usage["p2"].pk})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="usage-by-project"' in html
    assert usage["p2"].public_id in html
    assert usage["p1"].public_id not in html.split('id="usage-by-project"')[1].split("</table>")[0]


@pytest.mark.django_db(transaction=True)
def test_report_adds_up_to_rows_of_real_calls(live_gateway: LiveGateway, provider: Provider) -> None:
    owner = make_user()
    org = make_org(owner=owner)
    key, raw = make_api_key(project=make_project(org=org), user=owner)
    _, admin = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=owner)
    started = int(time.time())
    for stream in (False, True, False):
        answer = httpx.post(
            f"{live_gateway.url}/v1/chat/completions",
            json={
                "model": "fake-model",
                "stream": stream,
                "messages": [{"role": "user", "content": "one two three"}],
            },
            headers={"Authorization": f"Bearer {raw}"},
            timeout=10,
        )
        assert answer.status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and UsageRecord.objects.filter(organization=org).count() < 3:
        close_old_connections()
        time.sleep(0.05)
    recorded = UsageRecord.objects.filter(organization=org).aggregate(
        i=Sum("prompt_tokens"), o=Sum("completion_tokens"), n=Count("pk")
    )
    assert recorded["n"] == 3
    page = get(
        f"/v1/organization/{org.public_id}/usage/completions",
        admin,
        start_time=started - 60,
        bucket_width="1m",
        group_by="api_key_id",
    ).json()
    assert totals(page) == (recorded["i"], recorded["o"], 3) == (9, 18, 3)
    assert {r["api_key_id"] for b in page["data"] for r in b["results"]} == {key.public_id}


def test_admin_summary_over_the_last_day_and_week(admin_user: Any) -> None:
    from django.utils import timezone

    owner = make_user()
    org = make_org(owner=owner)
    project = make_project(org=org)
    key, _ = make_api_key(project=project, user=owner)
    now = timezone.now()
    row(org, project, key, "m", now - timedelta(hours=2), 10, 1)  # in the last day
    row(org, project, key, "m", now - timedelta(days=3), 20, 2)  # in the last week only
    row(org, project, key, "m", now - timedelta(days=20), 40, 4)  # in neither
    client = Client()
    client.force_login(admin_user)

    def summary(period: str) -> str:
        html = client.get("/admin/inference/usagerecord/", {"period": period}).content.decode()
        return html.split('id="usage-by-project"')[1].split("</table>")[0]

    assert "<td>11</td>" in summary("24h")
    assert "<td>33</td>" not in summary("24h")
    assert "<td>33</td>" in summary("7d")
    assert "<td>77</td>" in summary("30d")


def test_a_page_costs_one_page_of_buckets_whatever_the_range(
    usage: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    path = "/v1/organization/usage/completions"
    now = int(time.time())
    # From the epoch by the minute: refused up front, naming the parameter.
    refused = get(path, usage["admin"], start_time=0, bucket_width="1m")
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "start_time"
    assert_valid("ErrorResponse", refused.json())
    # The widest range allowed by the minute (7 days, 10,080 buckets): one page of 60 is built.
    started = time.perf_counter()
    with django_assert_max_num_queries(8):
        page = get(path, usage["admin"], start_time=now - 7 * 86400 + 120, bucket_width="1m").json()
    assert time.perf_counter() - started < 1.0
    assert len(page["data"]) == 60
    assert page["has_more"] is True
    assert page["next_page"] == f"page_{page['data'][-1]['start_time'] + 60}"
    # end_time in the future is capped at now: no buckets for time that has not happened yet.
    capped = get(path, usage["admin"], start_time=now - 3 * 86400, end_time=now + 30 * 86400, limit=31).json()
    assert len(capped["data"]) == 4
    assert capped["has_more"] is False
    assert capped["data"][-1]["end_time"] <= now + 2
    for width, days in (("1h", 94), ("1d", 3 * 366 + 1)):
        too_wide = get(path, usage["admin"], start_time=now - days * 86400, bucket_width=width)
        assert too_wide.status_code == 400, width
        assert too_wide.json()["error"]["param"] == "start_time"
