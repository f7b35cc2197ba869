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


class AlternativeSchemes(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Any one of `schemes` is enough (OpenAPI's OR); the schemes are defined in gateway.schema.

    drf-spectacular registers a scheme per authentication class and warns when two classes
    define the same name, so each class registers a placeholder that gateway.schema's hook
    removes, and the requirements name the shared schemes.
    """

    schemes: tuple[str, ...] = ()

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        return [{scheme: []} for scheme in self.schemes]

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer"}


class DataAuthenticationScheme(AlternativeSchemes):  # type: ignore[no-untyped-call]
    target_class = "accounts.authentication.DataAuthentication"
    name = "_DataAuthentication"
    schemes = ("ApiKeyAuth", "JwtAuth")


class AdminAuthenticationScheme(AlternativeSchemes):  # type: ignore[no-untyped-call]
    target_class = "accounts.authentication.AdminAuthentication"
    name = "_AdminAuthentication"
    schemes = ("AdminKeyAuth", "JwtAuth")


def principal_of(request: Request) -> Principal:
    """The Principal that one of the classes above put on `request.auth`, typed."""
    principal = request.auth
    if not isinstance(principal, Principal):
        from gateway.errors import AuthenticationError

        raise AuthenticationError("This route needs a credential.", code="missing_api_key")
    return principal
