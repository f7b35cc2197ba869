"""Reads for the tenancy layer. Every selector takes its tenant explicitly."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.db.models import Exists, F, OuterRef, Q, QuerySet

from gateway.errors import NotFound
from organizations.budgets import to_nanos
from organizations.keycache import Budget, KeySnapshot, RateRule
from organizations.models import (
    ApiKey,
    AuditLogEntry,
    Invite,
    Organization,
    OrganizationMember,
    Project,
    ProjectMember,
    ProjectRateLimit,
    ServiceAccount,
)


def organization_default() -> Organization:
    return Organization.objects.get(is_default=True, deleted_at__isnull=True)


def organization_list_for_user(*, user_id: int) -> QuerySet[Organization]:
    """Organizations the user has a role in or a project in (a project alone shows the
    organization's name and id, nothing of its members or keys)."""
    with_role = OrganizationMember.objects.filter(user_id=user_id).values("organization_id")
    with_project = ProjectMember.objects.filter(user_id=user_id, project__deleted_at__isnull=True).values(
        "project__organization_id"
    )
    return Organization.objects.filter(
        Q(pk__in=with_role) | Q(pk__in=with_project), deleted_at__isnull=True
    ).order_by("pk")


def organization_get_for_user(*, user_id: int, public_id: str) -> Organization:
    organization = organization_list_for_user(user_id=user_id).filter(public_id=public_id).first()
    if organization is None:
        raise NotFound(
            f"No organization with id '{public_id}'.", param="organization", code="organization_not_found"
        )
    return organization


def organization_role(*, organization_id: int, user_id: int) -> str | None:
    return (
        OrganizationMember.objects.filter(organization_id=organization_id, user_id=user_id)
        .values_list("role", flat=True)
        .first()
    )


def project_list(*, organization_id: int, include_archived: bool = False) -> QuerySet[Project]:
    projects = Project.objects.filter(organization_id=organization_id, deleted_at__isnull=True)
    if not include_archived:
        projects = projects.filter(status=Project.Status.ACTIVE)
    return projects


def project_default_for_organization(*, organization_id: int) -> Project | None:
    """An organization key without OpenAI-Project acts in the organization's oldest project."""
    return project_list(organization_id=organization_id).order_by("pk").first()


def project_list_for_user(*, organization_id: int, user_id: int) -> QuerySet[Project]:
    """Projects a user may act in: their memberships, or all of them for an organization owner."""
    projects = project_list(organization_id=organization_id)
    if organization_role(organization_id=organization_id, user_id=user_id) == OrganizationMember.Role.OWNER:
        return projects
    return projects.filter(members__user_id=user_id)


def project_default_for_user(*, user_id: int) -> Project | None:
    """The user's "Default Project": the oldest active project they own in the default organization."""
    return (
        Project.objects.filter(
            organization__is_default=True,
            organization__deleted_at__isnull=True,
            deleted_at__isnull=True,
            status=Project.Status.ACTIVE,
            members__user_id=user_id,
            members__role=ProjectMember.Role.OWNER,
        )
        .order_by("pk")
        .first()
    )


def api_key_snapshot_load(*, key_hash: str) -> KeySnapshot | None:
    """One query: the key with its organization, project and owner, as authentication sees it.

    A key acts with its owner's current standing: admin and organization keys only while the
    owner owns the organization; project keys while the owner belongs to the project or owns the
    organization. The services drop a key from the cache whenever that standing changes.
    """
    owns_organization = OrganizationMember.objects.filter(
        organization_id=OuterRef("organization_id"),
        user_id=OuterRef("owner_user_id"),
        role=OrganizationMember.Role.OWNER,
    )
    in_project = ProjectMember.objects.filter(
        project_id=OuterRef("project_id"), user_id=OuterRef("owner_user_id")
    )
    key = (
        ApiKey.objects.select_related("organization", "project", "owner_user", "service_account")
        .annotate(owner_owns_organization=Exists(owns_organization), owner_in_project=Exists(in_project))
        .filter(key_hash=key_hash)
        .first()
    )
    if key is None:
        return None
    project = key.project
    owner_ok = key.owner_user is None or key.owner_user.is_active
    if key.key_type in (ApiKey.Type.ADMIN, ApiKey.Type.ORGANIZATION):
        owner_ok = owner_ok and key.owner_owns_organization
    elif key.service_account_id is None and key.owner_user_id is not None:
        owner_ok = owner_ok and (key.owner_owns_organization or key.owner_in_project)
    service_ok = key.service_account is None or key.service_account.deleted_at is None
    usable = (
        key.enabled
        and key.deleted_at is None
        and key.organization.deleted_at is None
        and (project is None or (project.deleted_at is None and project.status == Project.Status.ACTIVE))
        and owner_ok
        and service_ok
    )
    return KeySnapshot(
        id=key.pk,
        public_id=key.public_id,
        key_type=key.key_type,
        organization_id=key.organization_id,
        organization_public_id=key.organization.public_id,
        project_id=key.project_id,
        project_public_id=project.public_id if project else None,
        user_id=key.owner_user_id,
        user_public_id=key.owner_user.public_id if key.owner_user else None,
        service_account_id=key.service_account_id,
        expires_at=key.expires_at.timestamp() if key.expires_at else None,
        usable=usable,
        rate_limits=api_key_rate_rules(key=key)
        + (project_rate_rules(project_id=key.project_id) if key.project_id else ()),
        budgets=_budget_of(f"k{key.pk}", key.monthly_budget, key.monthly_soft_budget)
        + (project_budgets(project=project) if project else ()),
        model_access=tuple(
            tuple(allowed)
            for allowed in (key.allowed_models, project.allowed_models if project else [])
            if allowed
        ),
    )


# --- Budgets (organizations.budgets enforces them) -------------------------------------------


def _budget_of(scope: str, hard: Decimal | None, soft: Decimal | None) -> tuple[Budget, ...]:
    limits = (to_nanos(hard), to_nanos(soft))
    return ((scope, *limits),) if any(limits) else ()


def project_budgets(*, project: Project) -> tuple[Budget, ...]:
    return _budget_of(f"p{project.pk}", project.monthly_budget, project.monthly_soft_budget)


# --- Rate limits (organizations.ratelimits enforces them) ------------------------------------


def api_key_rate_rules(*, key: ApiKey) -> tuple[RateRule, ...]:
    limits = (key.max_requests_per_1_minute, key.max_tokens_per_1_minute, key.max_concurrent_streams)
    return ((f"k{key.pk}", ProjectRateLimit.ALL_MODELS, *limits),) if any(limits) else ()


def project_rate_rules(*, project_id: int) -> tuple[RateRule, ...]:
    """One query: the project's limits as the rules the principal carries."""
    rows = ProjectRateLimit.objects.filter(project_id=project_id).values_list(
        "model", "max_requests_per_1_minute", "max_tokens_per_1_minute", "max_concurrent_streams"
    )
    return tuple(
        (f"p{project_id}", model, rpm, tpm, streams)
        for model, rpm, tpm, streams in rows
        if rpm or tpm or streams
    )


def project_rate_limit_list(*, project_id: int) -> QuerySet[ProjectRateLimit]:
    return ProjectRateLimit.objects.filter(project_id=project_id).order_by("model")


def project_rate_limit_get(*, project_id: int, public_id: str) -> ProjectRateLimit:
    model = public_id.removeprefix("rl_") if public_id.startswith("rl_") else None
    limit = ProjectRateLimit.objects.filter(project_id=project_id, model=model).first() if model else None
    if limit is None:
        raise NotFound(
            f"No rate limit with id '{public_id}'.", param="rate_limit_id", code="rate_limit_not_found"
        )
    return limit


def api_key_hashes(*, organization_id: int | None = None, project_id: int | None = None) -> list[str]:
    """Hashes of every key under an organization or project, to drop them from the cache."""
    condition = Q()
    if organization_id is not None:
        condition &= Q(organization_id=organization_id)
    if project_id is not None:
        condition &= Q(project_id=project_id)
    return list(ApiKey.objects.filter(condition).values_list("key_hash", flat=True))


def project_for_user_by_public_id(*, user_id: int, public_id: str) -> Project:
    """A project the user belongs to (or whose organization they own), across organizations."""
    project = (
        Project.objects.select_related("organization")
        .filter(public_id=public_id, deleted_at__isnull=True, organization__deleted_at__isnull=True)
        .filter(
            Q(members__user_id=user_id)
            | Q(
                organization__members__user_id=user_id,
                organization__members__role=OrganizationMember.Role.OWNER,
            )
        )
        .distinct()
        .first()
    )
    if project is None:
        raise NotFound(f"No project with id '{public_id}'.", param="OpenAI-Project", code="project_not_found")
    return project


# --- The administration API ----------------------------------------------------------------


def organization_get_active(*, public_id: str) -> Organization:
    """An organization that is not deleted (the caller then checks its own access to it)."""
    organization = Organization.objects.filter(public_id=public_id, deleted_at__isnull=True).first()
    if organization is None:
        raise NotFound(
            f"No organization with id '{public_id}'.", param="org_id", code="organization_not_found"
        )
    return organization


def organization_list_active(*, organization_id: int) -> QuerySet[Organization]:
    return Organization.objects.filter(pk=organization_id, deleted_at__isnull=True)


def project_role(*, project_id: int, user_id: int) -> str | None:
    return (
        ProjectMember.objects.filter(project_id=project_id, user_id=user_id)
        .values_list("role", flat=True)
        .first()
    )


def organization_has_project_member(*, organization_id: int, user_id: int) -> bool:
    return ProjectMember.objects.filter(
        project__organization_id=organization_id, project__deleted_at__isnull=True, user_id=user_id
    ).exists()


def project_list_admin(
    *, organization_id: int, include_archived: bool, member_user_id: int | None = None
) -> QuerySet[Project]:
    """Projects for the admin API; with member_user_id, only those the user is a member of."""
    projects = project_list(organization_id=organization_id, include_archived=include_archived)
    if member_user_id is not None:
        projects = projects.filter(members__user_id=member_user_id)
    return projects.select_related("organization")


def project_get(*, organization_id: int, public_id: str) -> Project:
    """An active or archived (not deleted) project of the organization."""
    project = (
        project_list(organization_id=organization_id, include_archived=True)
        .select_related("organization")
        .filter(public_id=public_id)
        .first()
    )
    if project is None:
        raise NotFound(f"No project with id '{public_id}'.", param="project_id", code="project_not_found")
    return project


def organization_member_list(*, organization_id: int) -> QuerySet[OrganizationMember]:
    return (
        OrganizationMember.objects.filter(organization_id=organization_id)
        .select_related("user")
        .annotate(user_public_id=F("user__public_id"))
    )


def organization_member_get(*, organization_id: int, user_public_id: str) -> OrganizationMember:
    member = (
        organization_member_list(organization_id=organization_id)
        .select_related("organization")
        .filter(user__public_id=user_public_id)
        .first()
    )
    if member is None:
        raise NotFound(f"No member with id '{user_public_id}'.", param="user_id", code="user_not_found")
    return member


def project_member_list(*, project_id: int) -> QuerySet[ProjectMember]:
    return (
        ProjectMember.objects.filter(project_id=project_id)
        .select_related("user")
        .annotate(user_public_id=F("user__public_id"))
    )


def project_member_get(*, project_id: int, user_public_id: str) -> ProjectMember:
    member = (
        project_member_list(project_id=project_id)
        .select_related("project__organization")
        .filter(user__public_id=user_public_id)
        .first()
    )
    if member is None:
        raise NotFound(f"No member with id '{user_public_id}'.", param="user_id", code="user_not_found")
    return member


def api_key_list(
    *,
    organization_id: int,
    key_types: Sequence[str],
    project_id: int | None = None,
    owner_user_id: int | None = None,
) -> QuerySet[ApiKey]:
    """Live keys of the given types in an organization (and project), shaped for the key objects.
    With owner_user_id, only that user's keys: what a caller who does not manage keys may see."""
    keys = ApiKey.objects.filter(
        organization_id=organization_id, key_type__in=key_types, deleted_at__isnull=True
    ).select_related("organization", "project", "owner_user", "service_account")
    if project_id is not None:
        keys = keys.filter(project_id=project_id)
    if owner_user_id is not None:
        keys = keys.filter(owner_user_id=owner_user_id)
    return keys


def api_key_get(
    *,
    organization_id: int,
    key_types: Sequence[str],
    public_id: str,
    project_id: int | None = None,
    owner_user_id: int | None = None,
) -> ApiKey:
    key = (
        api_key_list(
            organization_id=organization_id,
            key_types=key_types,
            project_id=project_id,
            owner_user_id=owner_user_id,
        )
        .filter(public_id=public_id)
        .first()
    )
    if key is None:
        raise NotFound(f"No API key with id '{public_id}'.", param="key_id", code="api_key_not_found")
    return key


def service_account_list(*, project_id: int) -> QuerySet[ServiceAccount]:
    return ServiceAccount.objects.filter(project_id=project_id, deleted_at__isnull=True).select_related(
        "project__organization"
    )


def service_account_get(*, project_id: int, public_id: str) -> ServiceAccount:
    account = service_account_list(project_id=project_id).filter(public_id=public_id).first()
    if account is None:
        raise NotFound(
            f"No service account with id '{public_id}'.",
            param="service_account_id",
            code="service_account_not_found",
        )
    return account


def invite_list(*, organization_id: int) -> QuerySet[Invite]:
    return Invite.objects.filter(organization_id=organization_id, deleted_at__isnull=True).select_related(
        "organization"
    )


def invite_get(*, organization_id: int, public_id: str) -> Invite:
    invite = invite_list(organization_id=organization_id).filter(public_id=public_id).first()
    if invite is None:
        raise NotFound(f"No invite with id '{public_id}'.", param="invite_id", code="invite_not_found")
    return invite


def audit_log_list(
    *,
    organization_id: int,
    actions: list[str] | None = None,
    actor_ids: list[str] | None = None,
    resource_ids: list[str] | None = None,
    project_ids: list[str] | None = None,
    since: datetime | None = None,
    before: datetime | None = None,
) -> QuerySet[AuditLogEntry]:
    entries = AuditLogEntry.objects.filter(organization_id=organization_id)
    if actions:
        entries = entries.filter(action__in=actions)
    if actor_ids:
        entries = entries.filter(Q(actor_id__in=actor_ids) | Q(actor_user_id__in=actor_ids))
    if resource_ids:
        entries = entries.filter(target_id__in=resource_ids)
    if project_ids:
        entries = entries.filter(project_id__in=project_ids)
    if since is not None:
        entries = entries.filter(created_at__gte=since)
    if before is not None:
        entries = entries.filter(created_at__lt=before)
    return entries
