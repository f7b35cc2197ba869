"""Writes for the tenancy layer, re-exported so callers import `organizations.services`."""

from organizations.services.keys import (
    api_key_create,
    api_key_delete,
    api_key_hash,
    api_key_set_enabled,
    api_key_touch,
    api_keys_invalidate,
)
from organizations.services.tenancy import (
    bootstrap_tenancy,
    organization_create,
    organization_ensure_default,
    organization_member_set,
    project_create,
    user_get_or_create,
    user_provision,
)

__all__ = [
    "api_key_create",
    "api_key_delete",
    "api_key_hash",
    "api_key_set_enabled",
    "api_key_touch",
    "api_keys_invalidate",
    "bootstrap_tenancy",
    "organization_create",
    "organization_ensure_default",
    "organization_member_set",
    "project_create",
    "user_get_or_create",
    "user_provision",
]
