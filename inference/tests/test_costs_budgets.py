"""Prices, costs and budgets: usage rows priced at the price of their time, the costs report
adding up to them, hard budgets refusing calls with insufficient_quota across two worker
processes, and the soft-limit e-mail sent once a month."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from inference import services
from inference.models import Provider, UsageRecord
from inference.tests.fake_upstream import FakeUpstream
from organizations import budgets
from organizations.models import ApiKey, BudgetNotice, Project
from organizations.tests.conftest import _smtp_server, eager_celery, smtp_sink  # noqa: F401 -- fixtures
from organizations.tests.factories import make_api_key, make_org, make_project, org_owner
from organizations.tests.smtp_sink import SmtpSink
from tests.live_server import GatewayProcess, LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hi"}]  # 1 prompt token and 6 completion tokens at the fake


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    budgets._local.clear()
    yield
    budgets._local.clear()


def _wait_rows(count: int, **filters: Any) -> list[UsageRecord]:
    deadline = time.monotonic() + 10
    while UsageRecord.objects.filter(**filters).count() < count and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = list(UsageRecord.objects.filter(**filters).order_by("pk"))
    assert len(rows) >= count, f"{len(rows)} usage rows, expected {count}"
    return rows


def _sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, _strict_response_validation=True)


def _priced(provider: Provider, **prices: str) -> None:
    services.provider_prices_set(
        provider=provider,
        prices=[
            {
                "model": model,
                "input_per_million": Decimal(value.split("/")[0]),
                "output_per_million": Decimal(value.split("/")[1]),
            }
            for model, value in prices.items()
        ],
    )


def _admin_get(url: str, key: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{url}{path}", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_prices_through_the_providers_api(
    live_gateway: LiveGateway, upstream: FakeUpstream, settings: Any
) -> None:
    settings.PROVIDER_PRIVATE_URLS_ALLOWED = True  # the fake upstream listens on 127.0.0.1
    org = make_org()
    _, admin = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=org_owner(org))
    prices = [
        {"model": "fake-model", "input_per_million": "0.15", "output_per_million": "0.6"},
        {
            "model": "*",
            "input_per_million": 1,
            "cached_input_per_million": 0.5,
            "output_per_million": 2,
            "currency": "eur",
        },
    ]
    created = httpx.post(
        f"{live_gateway.url}/v1/organization/models/providers",
        json={"name": "priced", "base_url": upstream.base_url, "prices": prices},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert sorted(body["prices"], key=lambda price: price["model"]) == [
        {
            "model": "*",
            "input_per_million": 1.0,
            "cached_input_per_million": 0.5,
            "output_per_million": 2.0,
            "currency": "eur",
        },
        {
            "model": "fake-model",
            "input_per_million": 0.15,
            "cached_input_per_million": 0.15,
            "output_per_million": 0.6,
            "currency": "usd",
        },
    ]
    bad = httpx.patch(
        f"{live_gateway.url}/v1/organization/models/providers/{body['id']}",
        json={"prices": [{"model": "x", "input_per_million": -1, "output_per_million": 1}]},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["param"].startswith("prices")


def test_usage_rows_priced_at_their_time_and_costs_add_up(
    live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream
) -> None:
    _priced(provider, **{"fake-model": "1.5/2", "fake-reasoner": "3/4"})
    org = make_org()
    project, other = make_project(org=org), make_project(org=org)
    _, key = make_api_key(project=project)
    _, other_key = make_api_key(project=other)
    _, admin = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=org_owner(org))
    sdk = _sdk(live_gateway.url, key)
    sdk.chat.completions.create(model="fake-model", messages=HELLO)
    sdk.completions.create(model="fake-reasoner", prompt="one two three")
    _sdk(live_gateway.url, other_key).chat.completions.create(model="fake-model", messages=HELLO)
    rows = _wait_rows(3, organization=org)
    # 1 x 1.5 + 6 x 2 per million; 3 x 3 + 6 x 4 per million.
    assert [row.cost for row in rows if row.project_id == project.pk] == [
        Decimal("0.0000135"),
        Decimal("0.000033"),
    ]
    # A new price prices new calls only: the rows already written keep theirs.
    _priced(provider, **{"fake-model": "10/10"})
    sdk.chat.completions.create(model="fake-model", messages=HELLO)
    rows = _wait_rows(4, organization=org)
    assert rows[0].cost == Decimal("0.0000135")
    assert rows[-1].cost == Decimal("0.00007")

    start = int(datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp())
    report = _admin_get(
        live_gateway.url,
        admin,
        "/v1/organization/costs",
        start_time=start,
        group_by="project_id,line_item",
        limit=1,
    )
    assert report.status_code == 200, report.text
    page = report.json()
    assert page["object"] == "page"
    assert page["has_more"] is False
    results = page["data"][0]["results"]
    assert all(result["object"] == "organization.costs.result" for result in results)
    expected: dict[tuple[str, str], Decimal] = {}
    for row in rows:
        group = (project.public_id if row.project_id == project.pk else other.public_id, row.model)
        expected[group] = expected.get(group, Decimal(0)) + row.cost
    assert {
        (r["project_id"], r["line_item"]): Decimal(str(r["amount"]["value"])) for r in results
    } == expected
    assert {r["amount"]["currency"] for r in results} == {"usd"}
    total = _admin_get(live_gateway.url, admin, "/v1/organization/costs", start_time=start).json()
    assert Decimal(str(total["data"][0]["results"][0]["amount"]["value"])) == sum(row.cost for row in rows)
    # The same report under the organization's id; another organization's id is not found.
    named = _admin_get(live_gateway.url, admin, f"/v1/organization/{org.public_id}/costs", start_time=start)
    assert named.status_code == 200, named.text
    assert named.json() == total
    foreign = _admin_get(
        live_gateway.url, admin, f"/v1/organization/{make_org().public_id}/costs", start_time=start
    )
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "organization_not_found"
    refused = _admin_get(
        live_gateway.url, admin, "/v1/organization/costs", start_time=start, bucket_width="1h"
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "bucket_width"
    assert _admin_get(live_gateway.url, key, "/v1/organization/costs", start_time=start).status_code in (
        401,
        403,
    )


def test_soft_limit_email_sent_once(
    live_gateway: LiveGateway,
    provider: Provider,
    smtp_sink: SmtpSink,  # noqa: F811 -- fixture
) -> None:
    _priced(provider, **{"fake-model": "1000/1000"})  # 0.007 a call
    org = make_org()
    project = make_project(org=org)
    _, key = make_api_key(project=project)
    _, admin = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=org_owner(org))
    budget_path = f"/v1/organization/projects/{project.public_id}/budget"
    answer = httpx.post(
        f"{live_gateway.url}{budget_path}",
        json={"monthly_soft_budget": "0.01"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    sdk = _sdk(live_gateway.url, key)
    for _ in range(5):  # 0.035: past the soft limit, which never refuses
        sdk.chat.completions.create(model="fake-model", messages=HELLO)
    assert (
        smtp_sink.wait_for(lambda: len(smtp_sink.messages) >= 1) if hasattr(smtp_sink, "wait_for") else True
    )
    deadline = time.monotonic() + 10
    while not smtp_sink.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(smtp_sink.messages) == 1
    message = smtp_sink.messages[0]
    assert message.recipients == [org_owner(org).email]
    assert "soft limit" in message.text()
    state = _admin_get(live_gateway.url, admin, budget_path).json()
    assert state["object"] == "project.budget"
    assert state["monthly_soft_budget"] == 0.01
    assert state["exhausted"] is False
    sdk.chat.completions.create(model="fake-model", messages=HELLO)
    _wait_rows(6, organization=org)
    assert BudgetNotice.objects.filter(scope=f"p{project.pk}").count() == 1
    assert len(smtp_sink.messages) == 1


def _set_budget(url: str, admin: str, project: Project, **budget: str) -> None:
    answer = httpx.post(
        f"{url}/v1/organization/projects/{project.public_id}/budget",
        json=budget,
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def _call_until_refused(url: str, key: str) -> tuple[int, openai.RateLimitError]:
    """Chat calls until one is refused: how many passed, and the refusal."""
    for succeeded in range(30):
        try:  # a fresh connection per call: the two workers share them
            _sdk(url, key).chat.completions.create(model="fake-model", messages=HELLO)
        except openai.RateLimitError as refusal:
            return succeeded, refusal
    raise AssertionError("never refused")


@pytest.fixture
def two_workers() -> Iterator[GatewayProcess]:
    server = GatewayProcess(
        workers=2, env={"MODEL_REGISTRY_REFRESH_SECONDS": "0"}, database=True, needs_redis=True
    )
    server.start()
    yield server
    server.stop()


def test_hard_budget_refuses_across_two_workers(
    two_workers: GatewayProcess, provider: Provider, upstream: FakeUpstream
) -> None:
    _priced(provider, **{"fake-model": "1000/1000"})  # 0.007 a call
    org = make_org()
    project = make_project(org=org)
    _, key = make_api_key(project=project)
    _, other_key = make_api_key(project=make_project(org=org))
    _, admin = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=org_owner(org))
    _set_budget(two_workers.url, admin, project, monthly_budget="0.05")
    succeeded, refusal = _call_until_refused(two_workers.url, key)
    assert refusal.status_code == 429
    assert refusal.code == "insufficient_quota"
    assert isinstance(refusal.body, dict)
    assert refusal.body["type"] == "insufficient_quota"
    assert refusal.body["message"].startswith(
        "You exceeded your current quota, please check your plan and billing details."
    )
    # 0.05 / 0.007: the 8th call takes the spend past it. One call may start before the previous
    # one's cost is counted; a per-worker counter would let about twice as many through.
    assert 8 <= succeeded <= 9
    for _ in range(6):
        with pytest.raises(openai.RateLimitError):
            _sdk(two_workers.url, key).chat.completions.create(model="fake-model", messages=HELLO)
    # Another project of the organization is not limited.
    assert (
        _sdk(two_workers.url, other_key).chat.completions.create(model="fake-model", messages=HELLO).choices
    )
    state = httpx.get(
        f"{two_workers.url}/v1/organization/projects/{project.public_id}/budget",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    ).json()
    assert state["exhausted"] is True
    assert state["spent"] >= 0.05


def test_a_hard_budget_whose_counter_redis_lost_is_enforced_again_after_reconciling(
    two_workers: GatewayProcess, provider: Provider, upstream: FakeUpstream
) -> None:
    from gateway.redis import sync_client
    from inference import spend

    _priced(provider, **{"fake-model": "1000/1000"})  # 0.007 a call
    org = make_org()
    project = make_project(org=org)
    _, key = make_api_key(project=project)
    _, admin = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=org_owner(org))
    _set_budget(two_workers.url, admin, project, monthly_budget="0.02")
    succeeded, _ = _call_until_refused(two_workers.url, key)
    assert 3 <= succeeded <= 4  # 0.02 / 0.007: the 3rd call takes the spend past it
    _wait_rows(succeeded, project=project)

    # Redis loses the counter (a restart without persistence): the month starts again at zero.
    client = sync_client()
    assert client is not None
    lost = list(client.scan_iter(f"bg:*:p{project.pk}:*"))
    assert lost
    client.delete(*lost)
    _sdk(two_workers.url, key).chat.completions.create(model="fake-model", messages=HELLO)
    _wait_rows(succeeded + 1, project=project)

    # Beat's reconciliation raises it back to the rows: refused again, the spend is the rows'.
    assert spend.budgets_reconcile() == 1
    with pytest.raises(openai.RateLimitError) as refused:
        _sdk(two_workers.url, key).chat.completions.create(model="fake-model", messages=HELLO)
    assert refused.value.code == "insufficient_quota"
    assert budgets.spent_nanos(org.public_id, f"p{project.pk}") == 7_000_000 * (succeeded + 1)
