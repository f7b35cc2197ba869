"""Who may use operator tools on a request (settings.PROFILING_AUTHORIZER, gateway.profiling)."""

from __future__ import annotations

from accounts.auth import AsgiHeaders, bearer_token, principal_from_headers
from accounts.models import User
from organizations import selectors
from organizations.models import OrganizationMember


def may_profile(raw_headers: list[tuple[bytes, bytes]]) -> bool:
    """Organization owners (their JWT or their organization's admin key) and staff users.

    Raises GatewayError when the credential itself is missing or invalid (the caller refuses)."""
    headers = AsgiHeaders(raw_headers)
    token = bearer_token(headers)
    admin_route = token.startswith("sk-admin_") or not token.startswith("sk-")
    principal = principal_from_headers(headers, route="admin" if admin_route else "data")
    if principal.is_admin_key:
        return True
    if principal.user_id is None:  # a service account's key
        return False
    if User.objects.filter(pk=principal.user_id, is_staff=True, is_active=True).exists():
        return True
    role = selectors.organization_role(organization_id=principal.organization_id, user_id=principal.user_id)
    return role == OrganizationMember.Role.OWNER
