"""Service accounts: project identities that own `service` keys instead of a user."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from organizations.models import ApiKey, Project, ServiceAccount
from organizations.services.audit import Actor, audit_changes, audit_record
from organizations.services.keys import api_key_create
from organizations.services.organizations import api_keys_revoke_all


@transaction.atomic
def service_account_create(
    *, project: Project, name: str, actor: Actor
) -> tuple[ServiceAccount, ApiKey, str]:
    """The account and its first key; returns (account, key row, raw key), the raw key only here."""
    account = ServiceAccount.objects.create(project=project, name=name)
    audit_record(
        organization=project.organization,
        actor=actor,
        action="service_account.created",
        target_type="service_account",
        target_id=account.public_id,
        project_id=project.public_id,
        changes=audit_changes({}, {"name": name, "role": account.role}),
    )
    key, raw = api_key_create(
        organization=project.organization,
        actor=actor,
        key_type=ApiKey.Type.SERVICE,
        name=name,
        project=project,
        service_account=account,
    )
    return account, key, raw


@transaction.atomic
def service_account_delete(*, account: ServiceAccount, actor: Actor) -> ServiceAccount:
    """Soft delete; its keys are revoked and stop working once this commits."""
    now = timezone.now()
    account.deleted_at = now
    account.save(update_fields=["deleted_at"])
    api_keys_revoke_all(ApiKey.objects.filter(service_account=account, deleted_at__isnull=True))
    audit_record(
        organization=account.project.organization,
        actor=actor,
        action="service_account.deleted",
        target_type="service_account",
        target_id=account.public_id,
        project_id=account.project.public_id,
        changes=audit_changes({"deleted_at": None}, {"deleted_at": now}),
    )
    return account
