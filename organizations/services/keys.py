"""API keys: generation, hashing, creation and revocation."""

from __future__ import annotations

import hmac
import re
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gateway.errors import InvalidRequest
from gateway.ids import random_token_alnum
from organizations import keycache
from organizations.models import ApiKey, Organization, Project, ServiceAccount
from organizations.services.audit import Actor, audit_changes, audit_record

KEY_RANDOM_LENGTH = 48
EPHEMERAL_MAX_SECONDS = 3600
KEY_PATTERN = re.compile(r"^sk-(admin|organization|project|service|ephemeral)_[A-Za-z0-9]{32,128}$")


def api_key_hash(raw_key: str) -> str:
    return hmac.digest(settings.APIKEY_SECRET.encode(), raw_key.encode(), "sha256").hex()


def api_key_redact(raw_key: str) -> str:
    return f"sk-…{raw_key[-4:]}"


def api_key_expiry(*, key_type: str, expires_in: int | None, expires_at: datetime | None) -> datetime | None:
    """When a key of this type would expire, or InvalidRequest naming the offending field."""
    now = timezone.now()
    if expires_in is not None and expires_at is not None:
        raise InvalidRequest("Give expires_in or expires_at, not both.", param="expires_in")
    if expires_in is not None:
        if expires_in <= 0:
            raise InvalidRequest("expires_in must be a positive number of seconds.", param="expires_in")
        expires_at = now + timedelta(seconds=expires_in)
    if expires_at is not None and expires_at <= now:
        raise InvalidRequest("expires_at must be in the future.", param="expires_at")
    if key_type == ApiKey.Type.EPHEMERAL:
        if expires_at is None:
            raise InvalidRequest(
                "An ephemeral key needs expires_in (at most 3600 seconds).", param="expires_in"
            )
        if expires_at > now + timedelta(seconds=EPHEMERAL_MAX_SECONDS):
            raise InvalidRequest("An ephemeral key lives at most 3600 seconds.", param="expires_in")
    return expires_at


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    key_type: str,
    name: str = "",
    description: str = "",
    project: Project | None = None,
    owner_user_id: int | None = None,
    service_account: ServiceAccount | None = None,
    expires_in: int | None = None,
    expires_at: datetime | None = None,
    actor: Actor | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns (row, raw key). The raw key exists only in this return value, and is
    never recorded.

    With an `actor` (the administration API, a new service account) the key is recorded in the
    audit log and an archived project is refused. Without one (the tenancy bootstrap, operator
    commands, the admin site) neither happens, as before these were one service."""
    if actor is not None and project is not None and project.status != Project.Status.ACTIVE:
        raise InvalidRequest(
            "An archived project cannot get new keys.", param="project_id", code="project_archived"
        )
    if key_type not in ApiKey.Type.values:
        raise InvalidRequest(f"Unknown key type '{key_type}'.", param="type")
    expiry = api_key_expiry(key_type=key_type, expires_in=expires_in, expires_at=expires_at)
    raw_key = f"sk-{key_type}_{random_token_alnum(KEY_RANDOM_LENGTH)}"
    key = ApiKey.objects.create(
        key_type=key_type,
        key_hash=api_key_hash(raw_key),
        redacted_value=api_key_redact(raw_key),
        name=name,
        description=description,
        organization=organization,
        project=project,
        owner_user_id=None if service_account else owner_user_id,
        service_account=service_account,
        expires_at=expiry,
    )
    if actor is not None:
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
    return key, raw_key


def _invalidate_after_commit(key_hashes: list[str]) -> None:
    transaction.on_commit(partial(keycache.invalidate, key_hashes))


# Settings that travel inside cached key entries (rate limits, model allow-lists, budgets) share
# one tail: save the fields, audit the change, drop the affected keys' cache entries after commit
# (every worker applies the change within a second).


def api_key_settings_saved(*, key: ApiKey, actor: Actor, fields: list[str], changes: dict[str, Any]) -> None:
    key.save(update_fields=fields)
    audit_record(
        organization=key.organization,
        actor=actor,
        action="api_key.updated",
        target_type="api_key",
        target_id=key.public_id,
        changes=changes,
        project_id=key.project.public_id if key.project else "",
    )
    _invalidate_after_commit([key.key_hash])


def project_settings_saved(
    *, project: Project, actor: Actor, fields: list[str], changes: dict[str, Any]
) -> None:
    from organizations.selectors import api_key_hashes

    project.save(update_fields=fields)
    audit_record(
        organization=project.organization,
        actor=actor,
        action="project.updated",
        target_type="project",
        target_id=project.public_id,
        changes=changes,
        project_id=project.public_id,
    )
    _invalidate_after_commit(api_key_hashes(project_id=project.pk))


@transaction.atomic
def api_key_delete(*, key: ApiKey) -> ApiKey:
    """Revoke: soft delete; every worker refuses the key within a second of the commit."""
    key.deleted_at = timezone.now()
    key.enabled = False
    key.save(update_fields=["deleted_at", "enabled"])
    _invalidate_after_commit([key.key_hash])
    return key


@transaction.atomic
def api_key_set_enabled(*, key: ApiKey, enabled: bool) -> ApiKey:
    key.enabled = enabled
    key.save(update_fields=["enabled"])
    _invalidate_after_commit([key.key_hash])
    return key


def api_keys_invalidate(*, organization_id: int | None = None, project_id: int | None = None) -> None:
    """After an organization is deleted or a project archived, its keys stop working at once."""
    from organizations.selectors import api_key_hashes

    _invalidate_after_commit(api_key_hashes(organization_id=organization_id, project_id=project_id))


def api_key_touch(*, key_id: int) -> None:
    """Record use. At most one write a minute per key, whichever worker gets there first."""
    now = timezone.now()
    from django.db.models import Q

    ApiKey.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - timedelta(minutes=1)), pk=key_id
    ).update(last_used_at=now)


def api_keys_invalidate_for_user(*, user_id: int, organization_id: int | None = None) -> None:
    """Keys act with their owner's current standing (enabled, role, memberships), which the key
    cache copied when it last read them: after that standing changes, drop the owner's keys (in
    one organization, or everywhere) so every worker re-reads them once the change commits."""
    keys = ApiKey.objects.filter(owner_user_id=user_id)
    if organization_id is not None:
        keys = keys.filter(organization_id=organization_id)
    _invalidate_after_commit(list(keys.values_list("key_hash", flat=True)))
