"""Organizations and their keys, as the administration API changes them (every change audited)."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import User
from gateway.errors import InvalidRequest
from organizations import keycache
from organizations.models import ApiKey, Organization, Project, ServiceAccount
from organizations.services.audit import Actor, audit_changes, audit_record
from organizations.services.keys import api_key_create, api_key_delete, api_keys_invalidate
from organizations.services.tenancy import organization_create


@transaction.atomic
def organization_register(*, owner: User, name: str, description: str, actor: Actor) -> Organization:
    """A new organization owned by `owner` (any user may create one)."""
    organization = organization_create(owner=owner, name=name, description=description)
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
def organization_update(
    *, organization: Organization, actor: Actor, name: str | None = None, description: str | None = None
) -> Organization:
    before = {"name": organization.name, "description": organization.description}
    if name is not None:
        organization.name = name
    if description is not None:
        organization.description = description
    after = {"name": organization.name, "description": organization.description}
    changes = audit_changes(before, after)
    if changes:
        organization.save(update_fields=list(changes))
        audit_record(
            organization=organization,
            actor=actor,
            action="organization.updated",
            target_type="organization",
            target_id=organization.public_id,
            changes=changes,
        )
    return organization


@transaction.atomic
def organization_delete(*, organization: Organization, actor: Actor) -> Organization:
    """Soft delete. Every key of the organization stops working once this commits."""
    if organization.is_default:
        raise InvalidRequest(
            "The default organization cannot be deleted.", param="org_id", code="default_organization"
        )
    organization.deleted_at = timezone.now()
    organization.save(update_fields=["deleted_at"])
    api_keys_invalidate(organization_id=organization.pk)
    audit_record(
        organization=organization,
        actor=actor,
        action="organization.deleted",
        target_type="organization",
        target_id=organization.public_id,
        changes=audit_changes({"deleted_at": None}, {"deleted_at": organization.deleted_at}),
    )
    return organization


@transaction.atomic
def api_key_issue(
    *,
    organization: Organization,
    actor: Actor,
    key_type: str,
    name: str = "",
    description: str = "",
    project: Project | None = None,
    owner_user_id: int | None = None,
    service_account: ServiceAccount | None = None,
    expires_in: int | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """api_key_create plus the audit entry. Returns (row, raw key); the raw key is never recorded."""
    if project is not None and project.status != Project.Status.ACTIVE:
        raise InvalidRequest("An archived project cannot get new keys.", param="project_id")
    key, raw = api_key_create(
        organization=organization,
        key_type=key_type,
        name=name,
        description=description,
        project=project,
        owner_user_id=owner_user_id,
        service_account=service_account,
        expires_in=expires_in,
        expires_at=expires_at,
    )
    audit_record(
        organization=organization,
        actor=actor,
        action="api_key.created",
        target_type="api_key",
        target_id=key.public_id,
        project_id=project.public_id if project else "",
        changes=audit_changes(
            {},
            {
                "name": key.name,
                "type": key.key_type,
                "redacted_value": key.redacted_value,
                "expires_at": key.expires_at,
            },
        ),
    )
    return key, raw


@transaction.atomic
def api_key_revoke(*, key: ApiKey, actor: Actor) -> ApiKey:
    """Revoke (soft delete) and audit; the key stops working on every worker once this commits."""
    api_key_delete(key=key)
    audit_record(
        organization=key.organization,
        actor=actor,
        action="api_key.deleted",
        target_type="api_key",
        target_id=key.public_id,
        project_id=key.project.public_id if key.project else "",
        changes=audit_changes({"deleted_at": None}, {"deleted_at": key.deleted_at}),
    )
    return key


def api_keys_revoke_all(keys: QuerySet[ApiKey]) -> None:
    """Revoke every live key in `keys` (call inside the caller's transaction); each stops working
    on every worker once it commits."""
    live = keys.filter(deleted_at__isnull=True)
    hashes = list(live.values_list("key_hash", flat=True))
    live.update(deleted_at=timezone.now(), enabled=False)
    transaction.on_commit(partial(keycache.invalidate, hashes))
