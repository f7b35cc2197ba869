"""Projects as the administration API changes them (every change audited)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from organizations.models import Project
from organizations.services.audit import Actor, audit_changes, audit_record
from organizations.services.keys import api_keys_invalidate


def _record(project: Project, actor: Actor, action: str, changes: dict[str, dict[str, object]]) -> None:
    audit_record(
        organization=project.organization,
        actor=actor,
        action=action,
        target_type="project",
        target_id=project.public_id,
        project_id=project.public_id,
        changes=changes,
    )


@transaction.atomic
def project_update(*, project: Project, name: str, actor: Actor) -> Project:
    changes = audit_changes({"name": project.name}, {"name": name})
    if changes:
        project.name = name
        project.save(update_fields=["name"])
        _record(project, actor, "project.updated", changes)
    return project


@transaction.atomic
def project_archive(*, project: Project, actor: Actor) -> Project:
    """Idempotent. The project's keys stop working once this commits."""
    if project.status == Project.Status.ARCHIVED:
        return project
    before = {"status": project.status, "archived_at": project.archived_at}
    project.status = Project.Status.ARCHIVED
    project.archived_at = timezone.now()
    project.save(update_fields=["status", "archived_at"])
    api_keys_invalidate(project_id=project.pk)
    _record(
        project,
        actor,
        "project.archived",
        audit_changes(before, {"status": project.status, "archived_at": project.archived_at}),
    )
    return project


@transaction.atomic
def project_delete(*, project: Project, actor: Actor) -> Project:
    """Soft delete; the project's keys stop working once this commits."""
    project.deleted_at = timezone.now()
    project.save(update_fields=["deleted_at"])
    api_keys_invalidate(project_id=project.pk)
    _record(
        project,
        actor,
        "project.deleted",
        audit_changes({"deleted_at": None}, {"deleted_at": project.deleted_at}),
    )
    return project
