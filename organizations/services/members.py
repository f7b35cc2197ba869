"""Organization and project members: add existing users, change roles, remove.

An organization (and a project) always keeps at least one owner: the owner rows are locked
before the check so two concurrent demotions cannot both pass it.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from accounts.models import User
from gateway.errors import InvalidRequest
from organizations.models import ApiKey, Organization, OrganizationMember, Project, ProjectMember
from organizations.services.audit import Actor, audit_changes, audit_record
from organizations.services.organizations import api_keys_revoke_all


def _existing_user(*, email: str | None, user_id: str | None) -> tuple[User, str]:
    """The user named by e-mail or public id, and the parameter that named it."""
    if user_id:
        user = User.objects.filter(public_id=user_id, is_active=True).first()
        param = "user_id"
    else:
        user = User.objects.filter(email=(email or "").strip().lower(), is_active=True).first()
        param = "email"
    if user is None:
        raise InvalidRequest(
            "No such user; people without an account join by invite.", param=param, code="user_not_found"
        )
    return user, param


def _record(
    organization: Organization,
    actor: Actor,
    action: str,
    user: User,
    changes: dict[str, dict[str, object]],
    project: Project | None = None,
) -> None:
    audit_record(
        organization=organization,
        actor=actor,
        action=action,
        target_type="project.user" if project else "organization.user",
        target_id=user.public_id,
        project_id=project.public_id if project else "",
        changes=changes,
    )


# --- Organization members ------------------------------------------------------------------


@transaction.atomic
def organization_member_add(
    *,
    organization: Organization,
    role: str,
    actor: Actor,
    email: str | None = None,
    user_id: str | None = None,
) -> OrganizationMember:
    user, param = _existing_user(email=email, user_id=user_id)
    try:
        with transaction.atomic():
            member = OrganizationMember.objects.create(organization=organization, user=user, role=role)
    except IntegrityError:
        raise InvalidRequest(
            "This user is already a member of the organization.", param=param, code="member_exists"
        ) from None
    _record(organization, actor, "organization.user.added", user, audit_changes({}, {"role": role}))
    return member


def _ensure_another_owner_org(member: OrganizationMember) -> None:
    owners = list(
        OrganizationMember.objects.select_for_update()
        .filter(organization_id=member.organization_id, role=OrganizationMember.Role.OWNER)
        .values_list("pk", flat=True)
    )
    if owners == [member.pk]:
        raise InvalidRequest(
            "The last owner of the organization cannot leave or stop being an owner.",
            param="user_id",
            code="last_owner",
        )


@transaction.atomic
def organization_member_update(*, member: OrganizationMember, role: str, actor: Actor) -> OrganizationMember:
    if member.role == role:
        return member
    if member.role == OrganizationMember.Role.OWNER:
        _ensure_another_owner_org(member)
    changes = audit_changes({"role": member.role}, {"role": role})
    member.role = role
    member.save(update_fields=["role"])
    _record(member.organization, actor, "organization.user.updated", member.user, changes)
    return member


@transaction.atomic
def organization_member_remove(*, member: OrganizationMember, actor: Actor) -> None:
    """Leaving an organization also leaves its projects and revokes the user's keys there."""
    if member.role == OrganizationMember.Role.OWNER:
        _ensure_another_owner_org(member)
    organization = member.organization
    ProjectMember.objects.filter(project__organization=organization, user_id=member.user_id).delete()
    api_keys_revoke_all(
        ApiKey.objects.filter(
            organization=organization, owner_user_id=member.user_id, deleted_at__isnull=True
        )
    )
    changes = audit_changes({"role": member.role}, {"role": None})
    member.delete()
    _record(organization, actor, "organization.user.removed", member.user, changes)


# --- Project members -----------------------------------------------------------------------


@transaction.atomic
def project_member_add(
    *, project: Project, role: str, actor: Actor, email: str | None = None, user_id: str | None = None
) -> ProjectMember:
    """Only members of the project's organization can join it (others join by invite)."""
    user, param = _existing_user(email=email, user_id=user_id)
    if not OrganizationMember.objects.filter(organization_id=project.organization_id, user=user).exists():
        raise InvalidRequest(
            "This user is not a member of the organization; invite them first.",
            param=param,
            code="not_an_organization_member",
        )
    try:
        with transaction.atomic():
            member = ProjectMember.objects.create(project=project, user=user, role=role)
    except IntegrityError:
        raise InvalidRequest(
            "This user is already a member of the project.", param=param, code="member_exists"
        ) from None
    _record(
        project.organization, actor, "project.user.added", user, audit_changes({}, {"role": role}), project
    )
    return member


def _ensure_another_owner_project(member: ProjectMember) -> None:
    owners = list(
        ProjectMember.objects.select_for_update()
        .filter(project_id=member.project_id, role=ProjectMember.Role.OWNER)
        .values_list("pk", flat=True)
    )
    if owners == [member.pk]:
        raise InvalidRequest(
            "The last owner of the project cannot leave or stop being an owner.",
            param="user_id",
            code="last_owner",
        )


@transaction.atomic
def project_member_update(*, member: ProjectMember, role: str, actor: Actor) -> ProjectMember:
    if member.role == role:
        return member
    if member.role == ProjectMember.Role.OWNER:
        _ensure_another_owner_project(member)
    changes = audit_changes({"role": member.role}, {"role": role})
    member.role = role
    member.save(update_fields=["role"])
    _record(member.project.organization, actor, "project.user.updated", member.user, changes, member.project)
    return member


@transaction.atomic
def project_member_remove(*, member: ProjectMember, actor: Actor) -> None:
    """Leaving a project revokes the user's keys in it."""
    if member.role == ProjectMember.Role.OWNER:
        _ensure_another_owner_project(member)
    project = member.project
    api_keys_revoke_all(
        ApiKey.objects.filter(project=project, owner_user_id=member.user_id, deleted_at__isnull=True)
    )
    changes = audit_changes({"role": member.role}, {"role": None})
    member.delete()
    _record(project.organization, actor, "project.user.removed", member.user, changes, project)
