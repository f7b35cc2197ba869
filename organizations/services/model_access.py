"""Writes for model allow-lists on projects and keys (organizations.model_access checks them).

The lists travel inside cached key entries, so each change drops the affected keys from the key
cache once it commits: every worker applies it within a second."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from organizations.model_access import allow_list_check
from organizations.models import ApiKey, Project
from organizations.services.audit import Actor
from organizations.services.keys import api_key_settings_saved, project_settings_saved


@transaction.atomic
def project_model_access_set(*, project: Project, allowed_models: Any, actor: Actor) -> Project:
    checked = allow_list_check(allowed_models)
    before = list(project.allowed_models)
    project.allowed_models = checked
    project_settings_saved(
        project=project,
        actor=actor,
        fields=["allowed_models"],
        changes={"allowed_models": {"before": before, "after": checked}},
    )
    return project


@transaction.atomic
def api_key_model_access_set(*, key: ApiKey, allowed_models: Any, actor: Actor) -> ApiKey:
    checked = allow_list_check(allowed_models)
    before = list(key.allowed_models)
    key.allowed_models = checked
    api_key_settings_saved(
        key=key,
        actor=actor,
        fields=["allowed_models"],
        changes={"allowed_models": {"before": before, "after": checked}},
    )
    return key
