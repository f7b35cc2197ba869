"""Budget counters that Redis lost are raised back to the month's usage rows (inference.spend)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings

from gateway.redis import sync_client
from inference import spend
from inference.models import UsageRecord
from organizations import budgets
from organizations.models import ApiKey, Organization, Project
from organizations.tests.factories import make_api_key, make_org, make_project

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def _redis() -> None:
    if not settings.REDIS_URL:
        pytest.skip("without REDIS_URL the counters are each web process's own (no shared store)")
    client = sync_client()
    assert client is not None
    for key in client.scan_iter("bg:*"):
        client.delete(key)


def _row(
    org: Organization,
    cost: str,
    *,
    project: Project | None = None,
    key: ApiKey | None = None,
    currency: str = "usd",
    created_at: datetime | None = None,
) -> UsageRecord:
    return UsageRecord.objects.create(
        organization=org,
        project=project,
        api_key_id=key.pk if key else None,
        model="m",
        cost=Decimal(cost),
        currency=currency,
        outcome=UsageRecord.Outcome.SUCCESS,
        created_at=created_at or datetime.now(tz=UTC),
    )


def _budgeted_project(org: Organization) -> Project:
    project = make_project(org=org)
    project.monthly_budget = Decimal("0.05")
    project.save(update_fields=["monthly_budget"])
    return project


@pytest.mark.usefixtures("_redis")
def test_lost_counters_are_raised_to_the_months_rows() -> None:
    org = make_org()
    project = _budgeted_project(org)
    key, _ = make_api_key(project=project)
    key.monthly_soft_budget = Decimal("0.01")
    key.save(update_fields=["monthly_soft_budget"])
    other_key, _ = make_api_key(project=project)  # no budget of its own
    unbudgeted = make_project(org=org)
    costs = ["0.0070000009", "0.0123456789", "0.0000000004"]  # fractions of a nano: truncated per row
    for cost in costs:
        _row(org, cost, project=project, key=key)
    _row(org, "0.002", project=project, key=other_key)
    _row(org, "5", project=project, key=key, currency="eur")  # another currency: not a budget's
    last_month = spend.month_start(datetime.now(tz=UTC)) - timedelta(seconds=1)
    _row(org, "7", project=project, key=key, created_at=last_month)
    _row(org, "3", project=unbudgeted)

    assert budgets.spent_nanos(org.public_id, f"p{project.pk}") == 0  # what Redis lost

    assert spend.budgets_reconcile() == 2
    per_call = [budgets.to_nanos(Decimal(cost)) for cost in costs]
    assert budgets.spent_nanos(org.public_id, f"p{project.pk}") == sum(per_call) + 2_000_000
    assert budgets.spent_nanos(org.public_id, f"k{key.pk}") == sum(per_call)
    client = sync_client()
    assert client is not None
    # Only scopes with a budget get a counter.
    assert not list(client.scan_iter(f"bg:*:p{unbudgeted.pk}:*"))
    assert not list(client.scan_iter(f"bg:*:k{other_key.pk}:*"))
    # A second pass finds nothing to raise.
    assert spend.budgets_reconcile() == 0


@pytest.mark.usefixtures("_redis")
def test_a_counter_ahead_of_its_rows_is_left_alone() -> None:
    """The counter holds calls whose rows are still buffered in a worker: never lowered."""
    org = make_org()
    project = _budgeted_project(org)
    _row(org, "0.01", project=project)
    client = sync_client()
    assert client is not None
    counter = f"bg:{{{org.public_id}}}:p{project.pk}:{budgets.month_now()}"
    client.set(counter, 30_000_000)
    assert spend.budgets_reconcile() == 0
    assert budgets.spent_nanos(org.public_id, f"p{project.pk}") == 30_000_000
    assert client.ttl(counter) == -1  # untouched, not even re-set


@pytest.mark.usefixtures("_redis")
def test_a_counter_behind_its_rows_is_raised_and_expires() -> None:
    org = make_org()
    project = _budgeted_project(org)
    _row(org, "0.04", project=project)
    client = sync_client()
    assert client is not None
    counter = f"bg:{{{org.public_id}}}:p{project.pk}:{budgets.month_now()}"
    client.set(counter, 1_000)
    assert spend.budgets_reconcile() == 1
    assert int(client.get(counter) or 0) == 40_000_000
    assert client.ttl(counter) > 30 * 86400  # outlives the month like a counter spend() wrote


def test_reconcile_is_on_beat() -> None:
    from inference import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["budgets-reconcile"]
    assert entry["task"] == tasks.budgets_reconcile.name
    assert entry["schedule"] == settings.BUDGET_RECONCILE_SECONDS
