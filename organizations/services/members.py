"""Organization and project members: add existing users, change roles, remove.

An organization (and a project) always keeps at least one owner: the owner rows are locked
before the check so two concurrent demotions cannot both pass it.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.models import User
from gateway.errors import InvalidRequest
from organizations.models import ApiKey, Organization, OrganizationMember, Project, ProjectMember
from organizations.services.audit import Actor, audit_changes, audit_record
from organizations.services.keys import api_keys_invalidate_for_user
from organizations.services.organizations import api_keys_revoke_all

# Keys that act for the whole organization; only an owner can make them, or keep them.
OWNER_KEY_TYPES = (ApiKey.Type.ADMIN, ApiKey.Type.ORGANIZATION)


def _user_in(*, scope: Q, email: str | None, user_id: str | None, refusal: str) -> tuple[User, str]:
    """The enabled user named by e-mail or public id who matches `scope`, and the parameter that
    named them. Anyone else, registered or not, gets the same refusal: an answer that differed
    would tell a caller which e-mail addresses have an account."""
    users = User.objects.filter(scope, is_active=True)
    if user_id:
        user, param = users.filter(public_id=user_id).first(), "user_id"
    else:
        user, param = users.filter(email=(email or "").strip().lower()).first(), "email"
    if user is None:
        raise InvalidRequest(refusal, param=param, code="user_not_found")
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
    """Give a role to someone who already shares the organization (a member, or someone with a
    project in it); anyone else joins by invite, which they accept themselves."""
    shares_organization = Q(
        pk__in=ProjectMember.objects.filter(
            project__organization=organization, project__deleted_at__isnull=True
        ).values("user_id")
    ) | Q(pk__in=OrganizationMember.objects.filter(organization=organization).values("user_id"))
    user, param = _user_in(
        scope=shares_organization,
        email=email,
        user_id=user_id,
        refusal="Only people who already belong to this organization or one of its projects can be "
        "added directly; invite anyone else.",
    )
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
def organization_member_keys_resync(*, organization_id: int, user_id: int) -> None:
    """Bring a user's keys in an organization in line with their current role there: if they
    are no longer its owner, their admin and organization keys are revoked (a demoted owner
    must not keep owner power through a key), and every key of theirs there is dropped from the
    cache, so all workers re-read it after the commit. Call after any change of their role or
    memberships (the administration API and Django admin both do)."""
    is_owner = OrganizationMember.objects.filter(
        organization_id=organization_id, user_id=user_id, role=OrganizationMember.Role.OWNER
    ).exists()
    if not is_owner:
        api_keys_revoke_all(
            ApiKey.objects.filter(
                organization_id=organization_id, owner_user_id=user_id, key_type__in=OWNER_KEY_TYPES
            )
        )
    api_keys_invalidate_for_user(user_id=user_id, organization_id=organization_id)


@transaction.atomic
def organization_member_update(*, member: OrganizationMember, role: str, actor: Actor) -> OrganizationMember:
    if member.role == role:
        return member
    if member.role == OrganizationMember.Role.OWNER:
        _ensure_another_owner_org(member)
    changes = audit_changes({"role": member.role}, {"role": role})
    member.role = role
    member.save(update_fields=["role"])
    organization_member_keys_resync(organization_id=member.organization_id, user_id=member.user_id)
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
    user, param = _user_in(
        scope=Q(
            pk__in=OrganizationMember.objects.filter(organization_id=project.organization_id).values(
                "user_id"
            )
        ),
        email=email,
        user_id=user_id,
        refusal="Only members of this organization can be added to its projects; invite anyone else.",
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
