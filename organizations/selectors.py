"""Reads for the tenancy layer. Every selector takes its tenant explicitly."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from gateway.errors import NotFound
from organizations.keycache import KeySnapshot
from organizations.models import ApiKey, Organization, OrganizationMember, Project, ProjectMember


def organization_default() -> Organization:
    return Organization.objects.get(is_default=True, deleted_at__isnull=True)


def organization_list_for_user(*, user_id: int) -> QuerySet[Organization]:
    return Organization.objects.filter(deleted_at__isnull=True, members__user_id=user_id).order_by("pk")


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
    """One query: the key with its organization, project and owner, as authentication sees it."""
    key = (
        ApiKey.objects.select_related("organization", "project", "owner_user", "service_account")
        .filter(key_hash=key_hash)
        .first()
    )
    if key is None:
        return None
    project = key.project
    owner_ok = key.owner_user is None or key.owner_user.is_active
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
    )


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
