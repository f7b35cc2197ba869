"""Usage reports over HTTP, in OpenAI's usage-API shape:

- `GET /v1/organization/usage/completions`: the caller's organization;
- `GET /v1/organization/{org_id}/usage/completions`, and `/v1/organization/{org_id}/usage`.

For organization owners: an admin key of the organization, or the JWT of one of its owners.
Other members get 403; organizations the caller does not belong to answer 404.
"""

from __future__ import annotations

import time
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import AdminAuthentication, principal_of
from gateway.api import ERROR_RESPONSES, query_flag
from gateway.errors import Forbidden, InvalidRequest, NotFound
from inference import reports
from organizations import selectors as org_selectors
from organizations.models import Organization, OrganizationMember

# --- Shapes ----------------------------------------------------------------------------------------


class UsageCompletionsResultOut(serializers.Serializer[Any]):
    object = serializers.CharField(default="organization.usage.completions.result")
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    input_cached_tokens = serializers.IntegerField()
    input_audio_tokens = serializers.IntegerField()
    output_audio_tokens = serializers.IntegerField()
    num_model_requests = serializers.IntegerField()
    project_id = serializers.CharField(allow_null=True, help_text="With group_by=project_id.")
    user_id = serializers.CharField(allow_null=True, help_text="With group_by=user_id.")
    api_key_id = serializers.CharField(allow_null=True, help_text="With group_by=api_key_id.")
    model = serializers.CharField(allow_null=True, help_text="With group_by=model.")
    batch = serializers.BooleanField(allow_null=True, help_text="With group_by=batch (always false here).")


class UsageTimeBucketOut(serializers.Serializer[Any]):
    object = serializers.CharField(default="bucket")
    start_time = serializers.IntegerField()
    end_time = serializers.IntegerField()
    results = UsageCompletionsResultOut(many=True)


class UsagePageOut(serializers.Serializer[Any]):
    object = serializers.CharField(default="page")
    data = UsageTimeBucketOut(many=True)  # type: ignore[assignment]  # OpenAI's name; shadows .data
    has_more = serializers.BooleanField()
    next_page = serializers.CharField(allow_null=True)


_UNIX_SECONDS = {"type": "integer", "minimum": 0}
_PARAMETERS = [
    OpenApiParameter("start_time", _UNIX_SECONDS, required=True, description="Unix seconds, inclusive."),
    OpenApiParameter("end_time", _UNIX_SECONDS, description="Unix seconds, exclusive; default now."),
    OpenApiParameter("bucket_width", str, enum=["1m", "1h", "1d"], description="default 1d"),
    OpenApiParameter("group_by", str, many=True, enum=list(reports.GROUP_FIELDS)),
    OpenApiParameter("project_ids", str, many=True),
    OpenApiParameter("user_ids", str, many=True),
    OpenApiParameter("api_key_ids", str, many=True),
    OpenApiParameter("models", str, many=True),
    OpenApiParameter("batch", bool),
    OpenApiParameter(
        "limit",
        {
            "type": "integer",
            "minimum": 1,
            "maximum": max(maximum for _, maximum in reports.BUCKET_LIMITS.values()),
        },
        description="buckets per page: 1m 60 (max 1440), 1h 24 (168), 1d 7 (31)",
    ),
    OpenApiParameter("page", str, description="next_page of the previous answer"),
]


class _UsageSchema(AutoSchema):
    """One view on three paths: each gets its own operation id."""

    def get_operation_id(self) -> str:
        if "{org_id}" not in self.path:
            return "usageCompletionsOfCallerOrganization"
        return "usageCompletions" if self.path.endswith("/completions") else "usageOfOrganization"


# --- Parsing --------------------------------------------------------------------------------------


def _list(request: Request, name: str) -> tuple[str, ...]:
    values = request.query_params.getlist(name) + request.query_params.getlist(f"{name}[]")
    return tuple(value for raw in values for value in str(raw).split(",") if value)


def _int(request: Request, name: str, *, required: bool = False) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        if required:
            raise InvalidRequest(f"{name} is required (Unix seconds).", param=name)
        return None
    try:
        return int(str(raw))
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer.", param=name) from None


def _query(request: Request) -> reports.UsageQuery:
    start = _int(request, "start_time", required=True)
    assert start is not None  # noqa: S101 -- required above
    return reports.UsageQuery(
        start_time=start,
        end_time=_int(request, "end_time"),
        bucket_width=request.query_params.get("bucket_width") or "1d",
        group_by=_list(request, "group_by"),
        project_ids=_list(request, "project_ids"),
        user_ids=_list(request, "user_ids"),
        api_key_ids=_list(request, "api_key_ids"),
        models=_list(request, "models"),
        batch=query_flag(request.query_params, "batch"),
        limit=_int(request, "limit"),
        page=request.query_params.get("page") or None,
    )


def _owned_organization(request: Request, org_id: str | None) -> Organization:
    principal = principal_of(request)
    if org_id is None:
        organization = org_selectors.organization_list_active(
            organization_id=principal.organization_id
        ).first()
        if organization is None:
            raise NotFound("The selected organization no longer exists.", code="organization_not_found")
    else:
        organization = org_selectors.organization_get_active(public_id=org_id)
    if principal.is_admin_key:
        if organization.pk != principal.organization_id:
            raise NotFound(
                f"No organization with id '{org_id}'.", param="org_id", code="organization_not_found"
            )
        return organization
    role = org_selectors.organization_role(organization_id=organization.pk, user_id=principal.user_id or 0)
    if role is None:
        raise NotFound(
            f"No organization with id '{organization.public_id}'.",
            param="org_id",
            code="organization_not_found",
        )
    if role != OrganizationMember.Role.OWNER:
        raise Forbidden("Only organization owners can read usage.")
    return organization


class UsageCompletions(APIView):
    authentication_classes = [AdminAuthentication]
    schema = _UsageSchema()

    @extend_schema(
        tags=["Administration"],
        parameters=_PARAMETERS,
        responses={200: UsagePageOut, **ERROR_RESPONSES},
        description="Chat completion usage in time buckets (OpenAI's usage API). Organization owners.",
    )
    def get(self, request: Request, org_id: str | None = None) -> Response:
        organization = _owned_organization(request, org_id)
        # end_time defaults to now; +1 because it is exclusive and rows carry sub-second times.
        now = int(time.time()) + 1
        page = reports.usage_completions(organization_id=organization.pk, query=_query(request), now=now)
        return Response(page)
