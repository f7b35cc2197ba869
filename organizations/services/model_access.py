"""Writes for model allow-lists on projects and keys (organizations.model_access checks them).

The lists travel inside cached key entries, so each change drops the affected keys from the key
cache once it commits: every worker applies it within a second."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from organizations.model_access import allow_list_check
from organizations.models import ApiKey, Project
from organizations.services.audit import Actor, audit_record
from organizations.services.keys import _invalidate_after_commit


@transaction.atomic
def project_model_access_set(*, project: Project, allowed_models: Any, actor: Actor) -> Project:
    from organizations.selectors import api_key_hashes

    checked = allow_list_check(allowed_models)
    before = list(project.allowed_models)
    project.allowed_models = checked
    project.save(update_fields=["allowed_models"])
    audit_record(
        organization=project.organization,
        actor=actor,
        action="project.updated",
        target_type="project",
        target_id=project.public_id,
        changes={"allowed_models": {"before": before, "after": checked}},
        project_id=project.public_id,
    )
    _invalidate_after_commit(api_key_hashes(project_id=project.pk))
    return project


@transaction.atomic
def api_key_model_access_set(*, key: ApiKey, allowed_models: Any, actor: Actor) -> ApiKey:
    checked = allow_list_check(allowed_models)
    before = list(key.allowed_models)
    key.allowed_models = checked
    key.save(update_fields=["allowed_models"])
    audit_record(
        organization=key.organization,
        actor=actor,
        action="api_key.updated",
        target_type="api_key",
        target_id=key.public_id,
        changes={"allowed_models": {"before": before, "after": checked}},
        project_id=key.project.public_id if key.project else "",
    )
    _invalidate_after_commit([key.key_hash])
    return key
