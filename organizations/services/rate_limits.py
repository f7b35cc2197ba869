"""Writes for rate limits: a project's per-model limits and a key's own (organizations.ratelimits
enforces them). The limits travel inside cached key entries, so every change drops the affected
keys from the key cache once it commits: every worker applies the new limits within a second."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from gateway.errors import InvalidRequest
from organizations.models import ApiKey, Project, ProjectRateLimit
from organizations.services.audit import Actor, audit_changes, audit_record
from organizations.services.keys import _invalidate_after_commit, api_key_settings_saved

LIMIT_FIELDS = ("max_requests_per_1_minute", "max_tokens_per_1_minute", "max_concurrent_streams")


def _limits(row: ProjectRateLimit | ApiKey) -> dict[str, Any]:
    return {name: getattr(row, name) for name in LIMIT_FIELDS}


def _invalidate_project_keys(project: Project) -> None:
    from organizations.selectors import api_key_hashes

    _invalidate_after_commit(api_key_hashes(project_id=project.pk))


def _check(values: dict[str, int | None]) -> dict[str, int]:
    checked: dict[str, int] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name not in LIMIT_FIELDS:
            raise InvalidRequest(f"Unknown limit '{name}'.", param=name)
        if value < 0:
            raise InvalidRequest(f"{name} must be 0 (no limit) or a positive number.", param=name)
        checked[name] = value
    return checked


@transaction.atomic
def project_rate_limit_set(
    *, project: Project, model: str, actor: Actor, **limits: int | None
) -> ProjectRateLimit:
    """Create or change the project's limits for `model` ("*": all models together). Fields left
    out (None) keep their value; 0 removes that limit."""
    model = model.strip()
    if not model or len(model) > 300:
        raise InvalidRequest(
            "A rate limit needs a model id (1-300 characters) or '*'.", param="rate_limit_id"
        )
    values = _check(limits)
    row = ProjectRateLimit.objects.select_for_update().filter(project=project, model=model).first()
    created = row is None
    before = {} if row is None else _limits(row)
    if row is None:
        row = ProjectRateLimit(project=project, model=model)
    for name, value in values.items():
        setattr(row, name, value)
    row.save()
    audit_record(
        organization=project.organization,
        actor=actor,
        action="rate_limit.created" if created else "rate_limit.updated",
        target_type="rate_limit",
        target_id=row.public_id[:40],
        changes={
            "model": {"before": None if created else model, "after": model},
            **audit_changes(before, _limits(row)),
        },
        project_id=project.public_id,
    )
    _invalidate_project_keys(project)
    return row


@transaction.atomic
def project_rate_limit_delete(*, rate_limit: ProjectRateLimit, actor: Actor) -> None:
    project = rate_limit.project
    audit_record(
        organization=project.organization,
        actor=actor,
        action="rate_limit.deleted",
        target_type="rate_limit",
        target_id=rate_limit.public_id[:40],
        changes={"model": {"before": rate_limit.model, "after": None}},
        project_id=project.public_id,
    )
    rate_limit.delete()
    _invalidate_project_keys(project)


@transaction.atomic
def api_key_limits_set(*, key: ApiKey, actor: Actor, **limits: int | None) -> ApiKey:
    """A key's own limits, over every model, on top of its project's. None keeps, 0 removes."""
    values = _check(limits)
    before = _limits(key)
    for name, value in values.items():
        setattr(key, name, value)
    api_key_settings_saved(
        key=key, actor=actor, fields=[*values], changes=audit_changes(before, _limits(key))
    )
    return key
