"""DRF authentication classes over accounts.auth (the one resolution path)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts.auth import Principal, RouteClass, principal_from_request


class _PrincipalAuthentication(BaseAuthentication):
    route: RouteClass = "data"

    def authenticate(self, request: Request) -> tuple[Any, Principal]:
        principal = principal_from_request(request._request, route=self.route)
        request._request.principal = principal  # type: ignore[attr-defined]
        return (None, principal)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'  # makes DRF answer 401, not 403, to a missing credential


class DataAuthentication(_PrincipalAuthentication):
    """Inference and data APIs: any non-admin API key, or a JWT."""

    route = "data"


class AdminAuthentication(_PrincipalAuthentication):
    """The administration API: an admin API key, or a JWT (views check the user's role)."""

    route = "admin"


class DataAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "accounts.authentication.DataAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A project, service, organization or ephemeral API key (sk-…), or a JWT access token.",
        }


class AdminAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "accounts.authentication.AdminAuthentication"
    name = "AdminKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An admin API key (sk-admin_…), or a JWT access token of an organization owner.",
        }


def principal_of(request: Request) -> Principal:
    """The Principal that one of the classes above put on `request.auth`, typed."""
    principal = request.auth
    if not isinstance(principal, Principal):
        from gateway.errors import AuthenticationError

        raise AuthenticationError("This route needs a credential.", code="missing_api_key")
    return principal
