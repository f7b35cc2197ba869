"""Organizations, projects and memberships: creation, and the bootstrap `migrate` runs (the default organization and its owners)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from accounts.models import User
from organizations.models import Organization, OrganizationMember, Project, ProjectMember

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
def organization_create(*, owner: User, name: str, description: str = "") -> Organization:
    organization = Organization.objects.create(name=name, description=description)
    OrganizationMember.objects.create(
        organization=organization, user=owner, role=OrganizationMember.Role.OWNER
    )
    return organization


@transaction.atomic
def project_create(*, organization: Organization, name: str, owner: User | None = None) -> Project:
    project = Project.objects.create(organization=organization, name=name)
    if owner is not None:
        ProjectMember.objects.create(project=project, user=owner, role=ProjectMember.Role.OWNER)
    return project


@transaction.atomic
def user_provision(*, user: User) -> Project:
    """Give a new user a membership in the default organization and a "Default Project" they own.

    Idempotent: a user who already owns a project there keeps it.
    """
    organization = organization_ensure_default()
    role = (
        OrganizationMember.Role.OWNER
        if user.email.lower() in {email.lower() for email in settings.ORGANIZATION_ADMIN_EMAILS}
        else OrganizationMember.Role.READER
    )
    member = OrganizationMember.objects.filter(organization=organization, user=user).first()
    if member is None:
        OrganizationMember.objects.create(organization=organization, user=user, role=role)
    elif role == OrganizationMember.Role.OWNER and member.role != role:
        member.role = role
        member.save(update_fields=["role"])
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
