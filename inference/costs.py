"""What a call cost, at its provider's price for the model when it ended, and the costs report."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Sum
from django.db.models.functions import TruncDay

from gateway.errors import InvalidRequest
from inference.models import UsageRecord
from inference.reports import BucketPage
from inference.selectors import Price
from organizations.budgets import to_nanos

_MILLION = Decimal(1_000_000)
_PLACES = Decimal("0.0000000001")  # the usage row's precision


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def cached_tokens(usage: dict[str, Any]) -> int:
    details = usage.get("prompt_tokens_details")
    return _count(details.get("cached_tokens")) if isinstance(details, dict) else 0


def call_cost(price: Price | None, usage: dict[str, Any]) -> tuple[Decimal, str]:
    """(cost, currency); no price: (0, the budget currency)."""
    if price is None:
        return Decimal(0), str(settings.BUDGET_CURRENCY)
    input_price, cached_price, output_price, currency = price
    prompt = _count(usage.get("prompt_tokens"))
    cached = min(cached_tokens(usage), prompt)
    completion = _count(usage.get("completion_tokens"))
    cost = ((prompt - cached) * input_price + cached * cached_price + completion * output_price) / _MILLION
    return cost.quantize(_PLACES), currency


def budget_nanos(cost: Decimal, currency: str) -> int:
    """What the call takes from a budget: costs in another currency than budgets' do not count."""
    return to_nanos(cost) if currency == settings.BUDGET_CURRENCY else 0


# --- The costs report (OpenAI's Costs API shape) ---------------------------------------------

DAY = 86400
COST_GROUP_FIELDS = ("project_id", "line_item")
COST_LIMITS = (7, 180)  # buckets per page: OpenAI's default and maximum
_MAX_RANGE_DAYS = 3 * 366


@dataclass(frozen=True)
class CostQuery:
    start_time: int
    end_time: int | None = None
    bucket_width: str = "1d"
    group_by: tuple[str, ...] = ()
    project_ids: tuple[str, ...] = ()
    limit: int | None = None
    page: str | None = None

    def checked(self, *, now: int) -> CostQuery:
        """Raises InvalidRequest for the first bad parameter; `end_time` capped at `now`."""
        if self.bucket_width != "1d":
            raise InvalidRequest("bucket_width must be 1d.", param="bucket_width")
        if self.start_time < 0:
            raise InvalidRequest("start_time must be a Unix time in seconds.", param="start_time")
        if self.end_time is not None and self.end_time <= self.start_time:
            raise InvalidRequest("end_time must be after start_time.", param="end_time")
        end = now if self.end_time is None else min(self.end_time, now)
        if end - self.start_time > _MAX_RANGE_DAYS * DAY:
            raise InvalidRequest("A costs report covers at most 3 years.", param="start_time")
        for field in self.group_by:
            if field not in COST_GROUP_FIELDS:
                raise InvalidRequest(
                    f"group_by accepts {', '.join(COST_GROUP_FIELDS)}; not '{field}'.", param="group_by"
                )
        if self.limit is not None and not 1 <= self.limit <= COST_LIMITS[1]:
            raise InvalidRequest(f"limit must be between 1 and {COST_LIMITS[1]}.", param="limit")
        return replace(self, end_time=end)


def costs_report(*, organization_id: int, query: CostQuery, now: int) -> dict[str, Any]:
    """One page of daily buckets of an organization's costs, summed from its usage rows.

    Each result is one currency (amounts in different currencies are never added); a line item
    is a model. Sums are of the rows' stored costs, so a report adds up exactly to its rows."""
    query = query.checked(now=now)
    page = BucketPage.of(
        start_time=query.start_time,
        end=query.end_time if query.end_time is not None else now,
        width=DAY,
        limit=query.limit or COST_LIMITS[0],
        page=query.page,
    )
    results: dict[int, list[dict[str, Any]]] = {}
    if page.buckets:
        rows = UsageRecord.objects.filter(
            organization_id=organization_id, created_at__gte=page.since, created_at__lt=page.before
        )
        if query.project_ids:
            rows = rows.filter(project__public_id__in=query.project_ids)
        columns = [{"project_id": "project__public_id", "line_item": "model"}[g] for g in query.group_by]
        summed = (
            rows.annotate(bucket=TruncDay("created_at", tzinfo=UTC))
            .values("bucket", "currency", *columns)
            .annotate(value=Sum("cost"))
            .order_by("bucket", "currency", *columns)
        )
        grouped = set(query.group_by)
        for row in summed:
            results.setdefault(int(row["bucket"].timestamp()), []).append(
                {
                    "object": "organization.costs.result",
                    "amount": {"value": float(row["value"] or 0), "currency": row["currency"]},
                    "line_item": row.get("model") if "line_item" in grouped else None,
                    "project_id": row.get("project__public_id") if "project_id" in grouped else None,
                }
            )
    return page.envelope(results)
