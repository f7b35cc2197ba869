"""Organizations, projects and memberships: creation, and the bootstrap every deployment starts from."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from accounts.models import User
from organizations.models import Organization, OrganizationMember, Project, ProjectMember
from organizations.services.audit import Actor, audit_changes, audit_record

DEFAULT_ORGANIZATION_NAME = "Default Organization"
DEFAULT_PROJECT_NAME = "Default Project"


@transaction.atomic
def organization_ensure_default() -> Organization:
    """Idempotent; the partial unique index makes a concurrent second default impossible."""
    organization = Organization.objects.filter(is_default=True).first()
    if organization is None:
        organization = Organization.objects.create(name=DEFAULT_ORGANIZATION_NAME, is_default=True)
    return organization


@transaction.atomic
def organization_member_set(*, organization: Organization, user: User, role: str) -> OrganizationMember:
    member, _ = OrganizationMember.objects.update_or_create(
        organization=organization, user=user, defaults={"role": role}
    )
    return member


@transaction.atomic
def organization_create(
    *, owner: User, name: str, description: str = "", actor: Actor | None = None
) -> Organization:
    """A new organization owned by `owner` (any user may create one through the API). With an
    `actor` the creation is recorded in the new organization's audit log."""
    organization = Organization.objects.create(name=name, description=description)
    OrganizationMember.objects.create(
        organization=organization, user=owner, role=OrganizationMember.Role.OWNER
    )
    if actor is not None:
        audit_record(
            organization=organization,
            actor=actor,
            action="organization.created",
            target_type="organization",
            target_id=organization.public_id,
            changes=audit_changes({}, {"name": name, "description": description}),
        )
    return organization


@transaction.atomic
def project_create(
    *, organization: Organization, name: str, owner: User | None = None, actor: Actor | None = None
) -> Project:
    """With an `actor` (the administration API) the creation is recorded in the audit log; the
    bootstrap's Default Projects are not."""
    project = Project.objects.create(organization=organization, name=name)
    if owner is not None:
        ProjectMember.objects.create(project=project, user=owner, role=ProjectMember.Role.OWNER)
    if actor is not None:
        audit_record(
            organization=organization,
            actor=actor,
            action="project.created",
            target_type="project",
            target_id=project.public_id,
            project_id=project.public_id,
            changes=audit_changes({}, {"name": name}),
        )
    return project


@transaction.atomic
def user_provision(*, user: User) -> Project:
    """Give a new user a "Default Project" they own in the default organization.

    No organization role comes with it: owning a project there must not let a guest read the
    organization's members, invites or keys. Operators listed in ORGANIZATION_ADMIN_EMAILS are
    the exception; they own the default organization. Idempotent: a user who already owns a
    project there keeps it.
    """
    organization = organization_ensure_default()
    if user.email.lower() in {email.lower() for email in settings.ORGANIZATION_ADMIN_EMAILS}:
        organization_member_set(organization=organization, user=user, role=OrganizationMember.Role.OWNER)
    existing = Project.objects.filter(
        organization=organization,
        members__user=user,
        members__role=ProjectMember.Role.OWNER,
        deleted_at__isnull=True,
    ).first()
    return existing or project_create(organization=organization, name=DEFAULT_PROJECT_NAME, owner=user)


@transaction.atomic
def user_get_or_create(*, email: str, name: str = "", is_guest: bool = False) -> tuple[User, bool]:
    """Find a user by e-mail or register one (with their Default Project)."""
    email = email.strip().lower()
    user = User.objects.filter(email=email).first()
    if user is not None:
        return user, False
    user = User.objects.create_user(email, name=name, is_guest=is_guest)
    user_provision(user=user)
    return user, True


def bootstrap_tenancy() -> Organization:
    """At migrate and startup: the default organization exists, and its admins own it."""
    organization = organization_ensure_default()
    for email in settings.ORGANIZATION_ADMIN_EMAILS:
        user, _ = user_get_or_create(email=email, name="Admin")
        organization_member_set(organization=organization, user=user, role=OrganizationMember.Role.OWNER)
    return organization
