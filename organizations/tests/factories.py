"""Factory functions: keyword-only overrides, unique values from a counter, saved objects."""

from __future__ import annotations

import itertools
from typing import Any

from accounts.models import User
from organizations import services
from organizations.models import ApiKey, Organization, OrganizationMember, Project, ServiceAccount

_counter = itertools.count(1)


def make_user(*, email: str | None = None, **fields: Any) -> User:
    user, _ = services.user_get_or_create(email=email or f"user{next(_counter)}@example.com", **fields)
    return user


def make_org(*, owner: User | None = None, name: str | None = None) -> Organization:
    return services.organization_create(owner=owner or make_user(), name=name or f"Org {next(_counter)}")


def make_project(
    *, org: Organization | None = None, owner: User | None = None, name: str | None = None
) -> Project:
    org = org or make_org()
    return services.project_create(organization=org, name=name or f"Project {next(_counter)}", owner=owner)


def org_owner(org: Organization) -> User:
    return org.members.filter(role=OrganizationMember.Role.OWNER).select_related("user").first().user  # type: ignore[union-attr]


def make_api_key(
    *,
    org: Organization | None = None,
    project: Project | None = None,
    key_type: str = ApiKey.Type.PROJECT,
    user: User | None = None,
    **fields: Any,
) -> tuple[ApiKey, str]:
    """Returns (row, raw key)."""
    if project is None and key_type in (ApiKey.Type.PROJECT, ApiKey.Type.SERVICE, ApiKey.Type.EPHEMERAL):
        project = make_project(org=org)
    org = org or (project.organization if project else make_org())
    service_account = None
    if key_type == ApiKey.Type.SERVICE:
        assert project is not None
        service_account = ServiceAccount.objects.create(project=project, name=f"svc {next(_counter)}")
    if key_type == ApiKey.Type.EPHEMERAL:
        fields.setdefault("expires_in", 600)
    owner = None if service_account else (user or org_owner(org))
    return services.api_key_create(
        organization=org,
        project=project,
        key_type=key_type,
        name=fields.pop("name", f"key {next(_counter)}"),
        owner_user_id=owner.pk if owner else None,
        service_account=service_account,
        **fields,
    )
