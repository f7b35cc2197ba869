"""`GET /v1/organization/costs` (the caller's organization) and `GET /v1/organization/{org_id}/costs`
in the shape of OpenAI's Costs API, for organization owners and admin keys (inference.costs
computes it from the usage rows)."""

from __future__ import annotations

import time
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import AdminAuthentication
from gateway.api import ERROR_RESPONSES
from inference import costs
from inference.report_views import _int, _list, _owned_organization


class CostAmountOut(serializers.Serializer[Any]):
    value = serializers.FloatField()
    currency = serializers.CharField()


class CostResultOut(serializers.Serializer[Any]):
    object = serializers.CharField(default="organization.costs.result")
    amount = CostAmountOut()
    line_item = serializers.CharField(allow_null=True, help_text="The model, with group_by=line_item.")
    project_id = serializers.CharField(allow_null=True, help_text="With group_by=project_id.")


class CostBucketOut(serializers.Serializer[Any]):
    object = serializers.CharField(default="bucket")
    start_time = serializers.IntegerField()
    end_time = serializers.IntegerField()
    results = CostResultOut(many=True)


class CostPageOut(serializers.Serializer[Any]):
    object = serializers.CharField(default="page")
    data = CostBucketOut(many=True)  # type: ignore[assignment]  # OpenAI's name; shadows .data
    has_more = serializers.BooleanField()
    next_page = serializers.CharField(allow_null=True)


class _CostsSchema(AutoSchema):
    """One view on two paths: each gets its own operation id."""

    def get_operation_id(self) -> str:
        return "usageCostsOfOrganization" if "{org_id}" in self.path else "usageCosts"


class OrganizationCosts(APIView):
    authentication_classes = [AdminAuthentication]
    schema = _CostsSchema()

    @extend_schema(
        tags=["Administration"],
        parameters=[
            OpenApiParameter(
                "start_time",
                {"type": "integer", "minimum": 0},
                required=True,
                description="Unix seconds, inclusive.",
            ),
            OpenApiParameter(
                "end_time",
                {"type": "integer", "minimum": 0},
                description="Unix seconds, exclusive; default now.",
            ),
            OpenApiParameter("bucket_width", str, enum=["1d"], description="1d only, as OpenAI's"),
            OpenApiParameter("group_by", str, many=True, enum=list(costs.COST_GROUP_FIELDS)),
            OpenApiParameter("project_ids", str, many=True),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": costs.COST_LIMITS[1]},
                description="buckets per page, 1-180, default 7",
            ),
            OpenApiParameter("page", str, description="next_page of the previous answer"),
        ],
        responses={200: CostPageOut, **ERROR_RESPONSES},
        description="Costs in daily buckets (OpenAI's Costs API), summed from the usage rows' costs "
        "at the price of their time. Organization owners.",
    )
    def get(self, request: Request, org_id: str | None = None) -> Response:
        organization = _owned_organization(request, org_id)
        start = _int(request, "start_time", required=True)
        assert start is not None  # noqa: S101 -- required above
        query = costs.CostQuery(
            start_time=start,
            end_time=_int(request, "end_time"),
            bucket_width=request.query_params.get("bucket_width") or "1d",
            group_by=_list(request, "group_by"),
            project_ids=_list(request, "project_ids"),
            limit=_int(request, "limit"),
            page=request.query_params.get("page") or None,
        )
        now = int(time.time()) + 1  # end_time is exclusive and rows carry sub-second times
        return Response(costs.costs_report(organization_id=organization.pk, query=query, now=now))
