"""Factory functions for conversations: keyword-only overrides, saved objects."""

from __future__ import annotations

from typing import Any

from accounts.auth import Principal
from conversations import services
from conversations.models import Conversation
from organizations.models import ApiKey
from organizations.tests.factories import make_api_key


def principal_for(key: ApiKey) -> Principal:
    """The principal a request with this key resolves to (without the HTTP round trip)."""
    assert key.project is not None
    return Principal(
        kind="api_key",
        organization_id=key.organization_id,
        organization_public_id=key.organization.public_id,
        project_id=key.project_id,
        project_public_id=key.project.public_id,
        user_id=key.owner_user_id,
        user_public_id=key.owner_user.public_id if key.owner_user else None,
        api_key_id=key.pk,
        api_key_public_id=key.public_id,
        api_key_type=key.key_type,
        service_account_id=key.service_account_id,
    )


def make_principal(**key_fields: Any) -> Principal:
    key, _ = make_api_key(**key_fields)
    return principal_for(key)


def make_conversation(*, principal: Principal | None = None, **fields: Any) -> Conversation:
    return services.conversation_create(principal=principal or make_principal(), **fields)
