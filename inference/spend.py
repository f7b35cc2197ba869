"""The month's spend as the usage rows show it, raised into the budget counters.

Admission reads each budget's counter in Redis (organizations.budgets), kept as calls end. Redis
can lose the counters: a restart without persistence, a flush, a failover to an empty replica.
A lost counter started the month again at zero, and every hard budget let a month's spend through
once more. So every BUDGET_RECONCILE_SECONDS beat sums this month's usage rows of each project and
API key that has a budget, and raises each counter that is below its rows' figure. A counter is
never lowered: it also holds calls whose rows are still in a worker's buffer.

A budget set in the middle of a month thereby counts the whole month's spend, as its definition
("this month's spend") says, not only what came after it was set.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import DecimalField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Floor

from gateway.redis import sync_client
from inference.models import UsageRecord
from organizations import budgets
from organizations.models import ApiKey, Project

logger = logging.getLogger(__name__)

_HAS_BUDGET = Q(monthly_budget__isnull=False) | Q(monthly_soft_budget__isnull=False)


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _nanos_by(rows: QuerySet[UsageRecord], column: str, ids: list[int]) -> dict[int, int]:
    """{id: the rows' cost in nanos}, each row truncated to whole nanos as the counter adds it
    (organizations.budgets.to_nanos), so equal rows and counter compare equal."""
    per_row = Floor(
        F("cost") * Value(budgets.NANOS), output_field=DecimalField(max_digits=30, decimal_places=0)
    )
    totals = (
        rows.filter(**{f"{column}__in": ids})
        .values(column)
        .annotate(nanos=Sum(per_row))
        .values_list(column, "nanos")
    )
    return {row_id: int(Decimal(nanos)) for row_id, nanos in totals if nanos}


def budgets_reconcile(*, now: datetime | None = None) -> int | None:
    """Raise this month's budget counters to their usage rows' spend. Returns how many were
    raised (None without Redis: the counters are then each web process's own)."""
    if sync_client() is None:
        return None
    now = now or datetime.now(tz=UTC)
    month = month_start(now)
    projects = dict(Project.objects.filter(_HAS_BUDGET).values_list("pk", "organization__public_id"))
    keys = dict(ApiKey.objects.filter(_HAS_BUDGET).values_list("pk", "organization__public_id"))
    recorded: dict[tuple[str, str], int] = {}
    if projects or keys:
        rows = UsageRecord.objects.filter(created_at__gte=month, currency=settings.BUDGET_CURRENCY)
        for project_id, nanos in _nanos_by(rows, "project_id", list(projects)).items():
            recorded[(projects[project_id], f"p{project_id}")] = nanos
        for key_id, nanos in _nanos_by(rows, "api_key_id", list(keys)).items():
            recorded[(keys[key_id], f"k{key_id}")] = nanos
    raised = budgets.counters_raise(month.strftime("%Y-%m"), recorded)
    if raised:
        # Counters only fall behind their rows when Redis lost them: worth an operator's eye.
        logger.warning("budget counters raised to their usage rows", extra={"counters": raised})
    return raised
