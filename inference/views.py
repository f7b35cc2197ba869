"""The provider registry's administration API (organization owners and admin keys)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.auth import Principal
from accounts.authentication import AdminAuthentication, principal_of
from gateway.api import ERROR_RESPONSES, parse
from gateway.errors import Forbidden, NotFound
from inference import selectors, services
from inference.models import Provider
from inference.serializers import (
    ProviderCreateIn,
    ProviderDeletedOut,
    ProviderListOut,
    ProviderOut,
    ProviderUpdateIn,
)
from organizations import selectors as org_selectors
from organizations.models import OrganizationMember, Project


def _require_owner(principal: Principal) -> None:
    if principal.is_admin_key:
        return
    role = org_selectors.organization_role(
        organization_id=principal.organization_id, user_id=principal.user_id or 0
    )
    if role != OrganizationMember.Role.OWNER:
        raise Forbidden("Only organization owners manage model providers.")


def _own(provider: Provider, principal: Principal) -> Provider:
    if provider.organization_id != principal.organization_id:
        raise Forbidden("Global providers are managed by the operator in Django admin.")
    return provider


def _project(principal: Principal, project_id: str | None) -> Project | None:
    if not project_id:
        return None
    project = (
        org_selectors.project_list(organization_id=principal.organization_id)
        .filter(public_id=project_id)
        .first()
    )
    if project is None:
        raise NotFound(f"No project with id '{project_id}'.", param="project_id", code="project_not_found")
    return project


class ProviderCollection(APIView):
    authentication_classes = [AdminAuthentication]

    @extend_schema(
        operation_id="listModelProviders",
        tags=["Administration"],
        responses={200: ProviderListOut, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        principal = principal_of(request)
        _require_owner(principal)
        providers = selectors.provider_list(organization_id=principal.organization_id).prefetch_related(
            "models", "prices"
        )
        return Response(
            {"object": "list", "data": [ProviderOut(provider).data for provider in providers.order_by("pk")]}
        )

    @extend_schema(
        operation_id="createModelProvider",
        tags=["Administration"],
        request=ProviderCreateIn,
        responses={201: ProviderOut, **ERROR_RESPONSES},
    )
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        _require_owner(principal)
        data = parse(ProviderCreateIn, request.data)
        provider = services.provider_create(
            name=data["name"],
            base_url=data["base_url"],
            api_key=data.get("api_key", ""),
            active=data["active"],
            organization_id=principal.organization_id,
            project=_project(principal, data.get("project_id")),
            model_endpoints=data.get("model_endpoints"),
            prices=data.get("prices"),
        )
        # Registering lists the upstream's models at once (and records its health).
        provider = services.provider_check(provider_id=provider.pk, force=True) or provider
        return Response(ProviderOut(provider).data, status=201)


class ProviderDetail(APIView):
    authentication_classes = [AdminAuthentication]

    @extend_schema(
        operation_id="retrieveModelProvider",
        tags=["Administration"],
        responses={200: ProviderOut, **ERROR_RESPONSES},
    )
    def get(self, request: Request, provider_id: str) -> Response:
        principal = principal_of(request)
        _require_owner(principal)
        provider = selectors.provider_get(organization_id=principal.organization_id, public_id=provider_id)
        return Response(ProviderOut(provider).data)

    @extend_schema(
        operation_id="updateModelProvider",
        tags=["Administration"],
        request=ProviderUpdateIn,
        responses={200: ProviderOut, **ERROR_RESPONSES},
    )
    def patch(self, request: Request, provider_id: str) -> Response:
        principal = principal_of(request)
        _require_owner(principal)
        provider = _own(
            selectors.provider_get(organization_id=principal.organization_id, public_id=provider_id),
            principal,
        )
        data = parse(ProviderUpdateIn, request.data)
        data.pop("project_id", None)
        provider = services.provider_update(provider=provider, **data)
        return Response(ProviderOut(provider).data)

    @extend_schema(
        operation_id="deleteModelProvider",
        tags=["Administration"],
        responses={200: ProviderDeletedOut, **ERROR_RESPONSES},
    )
    def delete(self, request: Request, provider_id: str) -> Response:
        principal = principal_of(request)
        _require_owner(principal)
        provider = _own(
            selectors.provider_get(organization_id=principal.organization_id, public_id=provider_id),
            principal,
        )
        services.provider_delete(provider=provider)
        return Response({"id": provider_id, "object": "model.provider.deleted", "deleted": True})
