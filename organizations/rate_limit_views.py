"""Rate limits in the administration API (organizations.ratelimits enforces them).

- `…/projects/{project_id}/rate_limits[/{rate_limit_id}]`: OpenAI's `project.rate_limit` objects.
  A rate limit's id is `rl_` and its model (`rl_*`: all the project's models together), so
  `POST …/rate_limits/rl_<model>` creates the limits of a model that has none yet, as OpenAI's
  SDK calls it. Organization owners change them; anyone who sees the project reads them.
- `…/api_keys/{key_id}/rate_limits`: a key's own limits, over every model, on top of its
  project's. Project owners (and organization owners) change them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.api import parse
from gateway.errors import InvalidRequest
from organizations import selectors, services
from organizations.models import ApiKey, ProjectRateLimit
from organizations.serializers import (
    AdminObjectDeletedOut,
    ApiKeyRateLimitOut,
    ProjectRateLimitListOut,
    ProjectRateLimitOut,
    RateLimitUpdateIn,
)
from organizations.views import PROJECT_KEY_TYPES, AdminView, _deleted, _project_scope, _scope, admin_op

_LIST_PARAMETERS = [
    OpenApiParameter("limit", int, description="1-100, default 100"),
    OpenApiParameter("after", str, description="a rate limit id: list those after it"),
    OpenApiParameter("before", str, description="a rate limit id: list those before it"),
]


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit") or "100"
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidRequest("limit must be between 1 and 100.", param="limit")
    return int(raw)


def _page(request: Request, rows: list[ProjectRateLimit]) -> dict[str, Any]:
    ids = [row.public_id for row in rows]
    for param in ("after", "before"):
        cursor = request.query_params.get(param)
        if cursor:
            if cursor not in ids:
                raise InvalidRequest(f"No rate limit with id '{cursor}' to page from.", param=param)
            at = ids.index(cursor)
            rows, ids = (rows[at + 1 :], ids[at + 1 :]) if param == "after" else (rows[:at], ids[:at])
    limit = _limit(request)
    page = rows[:limit]
    return {
        "object": "list",
        "data": [ProjectRateLimitOut(row).data for row in page],
        "first_id": page[0].public_id if page else None,
        "last_id": page[-1].public_id if page else None,
        "has_more": len(rows) > limit,
    }


def _model_of(rate_limit_id: str) -> str:
    if not rate_limit_id.startswith("rl_") or len(rate_limit_id) < 4:
        raise InvalidRequest(
            "A rate limit id is 'rl_' and a model id, or 'rl_*' for all models.", param="rate_limit_id"
        )
    return rate_limit_id.removeprefix("rl_")


class ProjectRateLimitCollection(AdminView):
    @admin_op(
        "listProjectRateLimits",
        implied_operation_id="listProjectRateLimitsOfCallerOrganization",
        responses={200: ProjectRateLimitListOut},
        parameters=_LIST_PARAMETERS,
    )
    def get(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        access = _project_scope(_scope(request, org_id), project_id)
        rows = list(selectors.project_rate_limit_list(project_id=access.project.pk))
        return Response(_page(request, rows))


class ProjectRateLimitDetail(AdminView):
    @admin_op(
        "retrieveProjectRateLimit",
        implied_operation_id="retrieveProjectRateLimitOfCallerOrganization",
        responses={200: ProjectRateLimitOut},
    )
    def get(
        self, request: Request, project_id: str, rate_limit_id: str, org_id: str | None = None
    ) -> Response:
        access = _project_scope(_scope(request, org_id), project_id)
        row = selectors.project_rate_limit_get(project_id=access.project.pk, public_id=rate_limit_id)
        return Response(ProjectRateLimitOut(row).data)

    @admin_op(
        "updateProjectRateLimits",
        implied_operation_id="updateProjectRateLimitsOfCallerOrganization",
        request=RateLimitUpdateIn,
        responses={200: ProjectRateLimitOut},
        description="Creates the model's limits when it has none yet. Organization owners only.",
    )
    def post(
        self, request: Request, project_id: str, rate_limit_id: str, org_id: str | None = None
    ) -> Response:
        scope = _scope(request, org_id)
        access = _project_scope(scope, project_id)
        scope.require_owner()
        data = parse(RateLimitUpdateIn, request.data)
        row = services.project_rate_limit_set(
            project=access.project, model=_model_of(rate_limit_id), actor=scope.actor, **data
        )
        return Response(ProjectRateLimitOut(row).data)

    @admin_op(
        "deleteProjectRateLimit",
        implied_operation_id="deleteProjectRateLimitOfCallerOrganization",
        responses={200: AdminObjectDeletedOut},
        description="Removes the model's limits. Organization owners only.",
    )
    def delete(
        self, request: Request, project_id: str, rate_limit_id: str, org_id: str | None = None
    ) -> Response:
        scope = _scope(request, org_id)
        access = _project_scope(scope, project_id)
        scope.require_owner()
        row = selectors.project_rate_limit_get(project_id=access.project.pk, public_id=rate_limit_id)
        services.project_rate_limit_delete(rate_limit=row, actor=scope.actor)
        return _deleted("project.rate_limit", rate_limit_id)


class ProjectKeyRateLimit(AdminView):
    def _key(self, request: Request, project_id: str, key_id: str, org_id: str | None) -> tuple[Any, ApiKey]:
        access = _project_scope(_scope(request, org_id), project_id)
        key = selectors.api_key_get(
            organization_id=access.project.organization_id,
            key_types=PROJECT_KEY_TYPES,
            project_id=access.project.pk,
            public_id=key_id,
            owner_user_id=access.key_owner_filter,
        )
        return access, key

    @admin_op(
        "retrieveProjectApiKeyRateLimits",
        implied_operation_id="retrieveProjectApiKeyRateLimitsOfCallerOrganization",
        responses={200: ApiKeyRateLimitOut},
    )
    def get(self, request: Request, project_id: str, key_id: str, org_id: str | None = None) -> Response:
        _, key = self._key(request, project_id, key_id, org_id)
        return Response(ApiKeyRateLimitOut(key).data)

    @admin_op(
        "updateProjectApiKeyRateLimits",
        implied_operation_id="updateProjectApiKeyRateLimitsOfCallerOrganization",
        request=RateLimitUpdateIn,
        responses={200: ApiKeyRateLimitOut},
        description="Project or organization owners.",
    )
    def post(self, request: Request, project_id: str, key_id: str, org_id: str | None = None) -> Response:
        access, key = self._key(request, project_id, key_id, org_id)
        access.require_manage()
        data = parse(RateLimitUpdateIn, request.data)
        key = services.api_key_limits_set(key=key, actor=access.scope.actor, **data)
        return Response(ApiKeyRateLimitOut(key).data)


class OrganizationKeyRateLimit(AdminView):
    def _key(self, request: Request, key_id: str, org_id: str | None) -> tuple[Any, ApiKey]:
        scope = _scope(request, org_id)
        key = selectors.api_key_get(
            organization_id=scope.organization.pk,
            key_types=[ApiKey.Type.ORGANIZATION],
            public_id=key_id,
            owner_user_id=scope.key_owner_filter(owners_only=False),
        )
        return scope, key

    @admin_op(
        "retrieveOrganizationApiKeyRateLimits",
        implied_operation_id="retrieveOrganizationApiKeyRateLimitsOfCallerOrganization",
        responses={200: ApiKeyRateLimitOut},
    )
    def get(self, request: Request, key_id: str, org_id: str | None = None) -> Response:
        _, key = self._key(request, key_id, org_id)
        return Response(ApiKeyRateLimitOut(key).data)

    @admin_op(
        "updateOrganizationApiKeyRateLimits",
        implied_operation_id="updateOrganizationApiKeyRateLimitsOfCallerOrganization",
        request=RateLimitUpdateIn,
        responses={200: ApiKeyRateLimitOut},
        description="Organization owners only.",
    )
    def post(self, request: Request, key_id: str, org_id: str | None = None) -> Response:
        scope, key = self._key(request, key_id, org_id)
        scope.require_owner()
        data = parse(RateLimitUpdateIn, request.data)
        key = services.api_key_limits_set(key=key, actor=scope.actor, **data)
        return Response(ApiKeyRateLimitOut(key).data)
