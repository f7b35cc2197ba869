"""Organizations and their keys, as the administration API changes them (every change audited)."""

from __future__ import annotations

from functools import partial

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from gateway.errors import InvalidRequest
from organizations import keycache
from organizations.models import ApiKey, Organization
from organizations.services.audit import Actor, audit_changes, audit_record
from organizations.services.keys import api_key_delete, api_keys_invalidate


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
