"""Monthly budgets in the administration API (organizations.budgets enforces them).

OpenAI sets project budgets in its dashboard only, so the shape is ours, in the style of its
project objects: `…/projects/{project_id}/budget` (organization owners change it, anyone who sees
the project reads it) and `…/projects/{project_id}/api_keys/{key_id}/budget` (project owners).
Amounts are in BUDGET_CURRENCY; `spent` is this month's enforced spend (UTC month).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.api import AmountField, StrictIn, parse
from organizations import budgets
from organizations.models import ApiKey, Project
from organizations.services.budgets import api_key_budget_set, project_budget_set
from organizations.views import AdminViewSet, admin_op, project_key_visible


def _amount(help_text: str) -> AmountField:
    return AmountField(max_digits=14, decimal_places=4, allow_null=True, required=False, help_text=help_text)


class BudgetUpdateIn(StrictIn):
    monthly_budget = _amount(
        "Hard limit: calls answer 429 insufficient_quota once the month's spend reaches it."
    )
    monthly_soft_budget = _amount(
        "Soft limit: the organization owners get one e-mail a month when it is reached."
    )


# One object, though a `list` action serves it (the router's route for a resource without an id).
@extend_schema_serializer(many=False)
class BudgetOut(serializers.Serializer[Any]):
    object = serializers.CharField()
    id = serializers.CharField(help_text="The project's or the key's id.")
    currency = serializers.CharField()
    month = serializers.CharField(help_text="The UTC month the spend is for, YYYY-MM.")
    monthly_budget = serializers.FloatField(allow_null=True)
    monthly_soft_budget = serializers.FloatField(allow_null=True)
    spent = serializers.FloatField(allow_null=True, help_text="null while the counter store is unreachable.")
    exhausted = serializers.BooleanField(help_text="The hard limit is reached: calls are refused.")


def budget_state(row: Project | ApiKey, scope: str, organization_public_id: str, kind: str) -> dict[str, Any]:
    spent = budgets.spent_nanos(organization_public_id, scope)
    hard = budgets.to_nanos(row.monthly_budget)
    return {
        "object": kind,
        "id": row.public_id,
        "currency": budgets.currency(),
        "month": budgets.month_now(),
        "monthly_budget": None if row.monthly_budget is None else float(row.monthly_budget),
        "monthly_soft_budget": None if row.monthly_soft_budget is None else float(row.monthly_soft_budget),
        "spent": None if spent is None else float(Decimal(spent) / budgets.NANOS),
        "exhausted": bool(hard and spent is not None and spent >= hard),
    }


def _project_state(project: Project) -> dict[str, Any]:
    return budget_state(project, f"p{project.pk}", project.organization.public_id, "project.budget")


def _key_state(key: ApiKey) -> dict[str, Any]:
    return budget_state(key, f"k{key.pk}", key.organization.public_id, "project.api_key.budget")


class ProjectBudget(AdminViewSet):
    @admin_op(
        "retrieveProjectBudget",
        implied_operation_id="retrieveProjectBudgetOfCallerOrganization",
        responses={200: BudgetOut},
    )
    def list(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        access = self.project
        return Response(BudgetOut(_project_state(access.project)).data)

    @admin_op(
        "updateProjectBudget",
        implied_operation_id="updateProjectBudgetOfCallerOrganization",
        request=BudgetUpdateIn,
        responses={200: BudgetOut},
        description="Fields left out keep their value; null removes a limit. Organization owners only.",
    )
    def create(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        scope, access = self.scope, self.project
        scope.require_owner()
        data = parse(BudgetUpdateIn, request.data)
        project = project_budget_set(project=access.project, actor=scope.actor, **data)
        return Response(BudgetOut(_project_state(project)).data)


class ProjectKeyBudget(AdminViewSet):
    def _key(self, key_id: str) -> tuple[Any, ApiKey]:
        return self.project, project_key_visible(self.project, key_id)

    @admin_op(
        "retrieveProjectApiKeyBudget",
        implied_operation_id="retrieveProjectApiKeyBudgetOfCallerOrganization",
        responses={200: BudgetOut},
    )
    def list(self, request: Request, project_id: str, key_id: str, org_id: str | None = None) -> Response:
        _, key = self._key(key_id)
        return Response(BudgetOut(_key_state(key)).data)

    @admin_op(
        "updateProjectApiKeyBudget",
        implied_operation_id="updateProjectApiKeyBudgetOfCallerOrganization",
        request=BudgetUpdateIn,
        responses={200: BudgetOut},
        description="Fields left out keep their value; null removes a limit. Project or organization owners.",
    )
    def create(self, request: Request, project_id: str, key_id: str, org_id: str | None = None) -> Response:
        access, key = self._key(key_id)
        access.require_manage()
        data = parse(BudgetUpdateIn, request.data)
        key = api_key_budget_set(key=key, actor=access.scope.actor, **data)
        return Response(BudgetOut(_key_state(key)).data)
