"""Writes for the tenancy layer, re-exported so callers import `organizations.services`."""

from organizations.services.keys import (
    api_key_create,
    api_key_delete,
    api_key_expiry,
    api_key_hash,
    api_key_set_enabled,
    api_key_touch,
    api_keys_invalidate,
    api_keys_invalidate_for_user,
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
    "api_key_expiry",
    "api_key_hash",
    "api_key_set_enabled",
    "api_key_touch",
    "api_keys_invalidate",
    "api_keys_invalidate_for_user",
    "bootstrap_tenancy",
    "organization_create",
    "organization_ensure_default",
    "organization_member_set",
    "project_create",
    "user_get_or_create",
    "user_provision",
]

# --- The administration API -----------------------------------------------------------------
from organizations.services.audit import SYSTEM, Actor, audit_changes, audit_record
from organizations.services.invites import (
    invite_accept,
    invite_create,
    invite_delete,
    invite_deliver,
    invite_resend,
)
from organizations.services.members import (
    organization_member_add,
    organization_member_keys_resync,
    organization_member_remove,
    organization_member_update,
    project_member_add,
    project_member_remove,
    project_member_update,
)
from organizations.services.organizations import (
    api_key_revoke,
    api_keys_revoke_all,
    organization_delete,
    organization_update,
)
from organizations.services.projects import (
    project_archive,
    project_delete,
    project_update,
)
from organizations.services.rate_limits import (
    api_key_limits_set,
    project_rate_limit_delete,
    project_rate_limit_set,
)
from organizations.services.service_accounts import service_account_create, service_account_delete

__all__ += [
    "SYSTEM",
    "Actor",
    "api_key_limits_set",
    "api_key_revoke",
    "api_keys_revoke_all",
    "audit_changes",
    "audit_record",
    "invite_accept",
    "invite_create",
    "invite_delete",
    "invite_deliver",
    "invite_resend",
    "organization_delete",
    "organization_member_add",
    "organization_member_keys_resync",
    "organization_member_remove",
    "organization_member_update",
    "organization_update",
    "project_archive",
    "project_delete",
    "project_member_add",
    "project_member_remove",
    "project_member_update",
    "project_rate_limit_delete",
    "project_rate_limit_set",
    "project_update",
    "service_account_create",
    "service_account_delete",
]
