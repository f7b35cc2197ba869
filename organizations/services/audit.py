"""The audit log: who changed what in an organization, with before/after of the changed fields.

Services record inside their own transaction, so an entry exists exactly when its change does.
Callers pass only plain, non-secret fields: key values, key hashes and invite codes never reach
this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway import context
from organizations.models import AuditLogEntry, Organization


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user (JWT), an API key (and the user it belongs to), or the system."""

    type: str  # user | api_key | invitee | system
    id: str = ""
    user_id: int | None = None
    user_public_id: str = ""


SYSTEM = Actor(type="system")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp())
    return value


def audit_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{field: {"before", "after"}} for the fields whose value differs."""
    changes: dict[str, dict[str, Any]] = {}
    for field in sorted(set(before) | set(after)):
        old, new = _plain(before.get(field)), _plain(after.get(field))
        if old != new:
            changes[field] = {"before": old, "after": new}
    return changes


def audit_record(
    *,
    organization: Organization,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str,
    changes: dict[str, dict[str, Any]] | None = None,
    project_id: str = "",
) -> AuditLogEntry:
    return AuditLogEntry.objects.create(
        organization=organization,
        action=action,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_user_id=actor.user_public_id,
        target_type=target_type,
        target_id=target_id,
        project_id=project_id,
        changes=changes or {},
        request_id=context.request_id() or "",
    )
