"""Writes for monthly budgets (organizations.budgets enforces them) and the soft-limit e-mail.

Budgets travel inside cached key entries, so each change drops the affected keys from the key
cache once it commits: every worker applies it within a second."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction

from gateway.errors import InvalidRequest
from organizations.models import ApiKey, BudgetNotice, Organization, OrganizationMember, Project
from organizations.services.audit import Actor, audit_changes
from organizations.services.keys import api_key_settings_saved, project_settings_saved

logger = logging.getLogger(__name__)

BUDGET_FIELDS = ("monthly_budget", "monthly_soft_budget")
_UNSET: Any = object()


def _apply(row: Project | ApiKey, values: dict[str, Decimal | None]) -> dict[str, dict[str, Any]]:
    before = {name: getattr(row, name) for name in BUDGET_FIELDS}
    for name, value in values.items():
        if value is _UNSET:
            continue
        if value is not None and value < 0:
            raise InvalidRequest(f"{name} must be 0 or more (null: no budget).", param=name)
        setattr(row, name, value)
    after = {name: getattr(row, name) for name in BUDGET_FIELDS}
    return audit_changes(
        {k: None if v is None else str(v) for k, v in before.items()},
        {k: None if v is None else str(v) for k, v in after.items()},
    )


@transaction.atomic
def project_budget_set(
    *, project: Project, actor: Actor, monthly_budget: Any = _UNSET, monthly_soft_budget: Any = _UNSET
) -> Project:
    """Set the project's monthly budgets; a field left out keeps its value, null removes it."""
    changes = _apply(project, {"monthly_budget": monthly_budget, "monthly_soft_budget": monthly_soft_budget})
    project_settings_saved(project=project, actor=actor, fields=list(BUDGET_FIELDS), changes=changes)
    return project


@transaction.atomic
def api_key_budget_set(
    *, key: ApiKey, actor: Actor, monthly_budget: Any = _UNSET, monthly_soft_budget: Any = _UNSET
) -> ApiKey:
    changes = _apply(key, {"monthly_budget": monthly_budget, "monthly_soft_budget": monthly_soft_budget})
    api_key_settings_saved(key=key, actor=actor, fields=list(BUDGET_FIELDS), changes=changes)
    return key


def _scope_name(scope: str) -> tuple[str, Decimal | None]:
    """A budget scope as people read it, and its soft limit now."""
    kind, pk = scope[0], int(scope[1:])
    if kind == "p":
        project = Project.objects.filter(pk=pk).first()
        return (
            (f"project {project.name} ({project.public_id})", project.monthly_soft_budget)
            if project
            else (
                scope,
                None,
            )
        )
    key = ApiKey.objects.filter(pk=pk).first()
    return (f"API key {key.name} ({key.public_id})", key.monthly_soft_budget) if key else (scope, None)


def budget_soft_limit_notify(*, organization_id: int, scope: str, month: str) -> None:
    """E-mail the organization's owners that a budget reached its soft limit this month.

    Once per scope and month, whoever calls: the notice row is the claim (a unique constraint), so
    a redelivered task or a second worker finds it and returns. A failed send gives the claim
    back and raises, so the retry sends it."""
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        logger.info("budget notice: the organization is gone", extra={"organization_id": organization_id})
        return
    try:
        with transaction.atomic():
            notice = BudgetNotice.objects.create(organization=organization, scope=scope, month=month)
    except IntegrityError:
        return  # already sent this month
    owners = list(
        OrganizationMember.objects.filter(
            organization=organization, role=OrganizationMember.Role.OWNER, user__is_active=True
        ).values_list("user__email", flat=True)
    )
    if not owners:
        return
    what, soft = _scope_name(scope)
    amount = f" of {soft} {settings.BUDGET_CURRENCY.upper()}" if soft is not None else ""
    message = EmailMessage(
        f"Jan: {what} reached its monthly soft limit",
        f"The spend of {what} in the organization {organization.name} reached its monthly soft "
        f"limit{amount} in {month}.\n\n"
        "Calls go on until the hard limit, if one is set. You get this e-mail once a month.\n",
        settings.DEFAULT_FROM_EMAIL,
        owners,
        connection=get_connection(fail_silently=False),
    )
    try:
        message.send()
    except Exception:
        notice.delete()
        raise
