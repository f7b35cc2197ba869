"""Rate limits in the administration API (organizations.ratelimits enforces them).

- `…/projects/{project_id}/rate_limits[/{rate_limit_id}]`: OpenAI's `project.rate_limit` objects.
  A rate limit's id is `rl_` and its model (`rl_*`: all the project's models together), so
  `POST …/rate_limits/rl_<model>` creates the limits of a model that has none yet, as OpenAI's
  SDK calls it. Organization owners change them; anyone who sees the project reads them.
- `…/api_keys/{key_id}/rate_limits`: a key's own limits, over every model, on top of its
  project's. Project owners (and organization owners) change them. Those are actions of the
  key viewsets (organizations.views).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.api import parse
from gateway.errors import InvalidRequest
from organizations import selectors, services
from organizations.models import ProjectRateLimit
from organizations.serializers import (
    AdminObjectDeletedOut,
    ProjectRateLimitListOut,
    ProjectRateLimitOut,
    RateLimitUpdateIn,
)
from organizations.views import AdminViewSet, _deleted, admin_op

_LIST_PARAMETERS = [
    OpenApiParameter(
        "limit", {"type": "integer", "minimum": 1, "maximum": 100}, description="1-100, default 100"
    ),
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


_RATE_LIMIT_ID = OpenApiParameter(
    "rate_limit_id",
    str,
    OpenApiParameter.PATH,
    pattern=r"^rl_.+$",
    description="`rl_` and a model id (which may hold slashes), or `rl_*` for all models.",
)


class ProjectRateLimitViewSet(AdminViewSet):
    lookup_url_kwarg = "rate_limit_id"
    lookup_value_converter = "path"  # `rl_` and a model id, which may hold slashes

    @admin_op(
        "listProjectRateLimits",
        implied_operation_id="listProjectRateLimitsOfCallerOrganization",
        responses={200: ProjectRateLimitListOut},
        parameters=_LIST_PARAMETERS,
    )
    def list(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        rows = list(selectors.project_rate_limit_list(project_id=self.project.project.pk))
        return Response(_page(request, rows))

    @admin_op(
        "retrieveProjectRateLimit",
        implied_operation_id="retrieveProjectRateLimitOfCallerOrganization",
        parameters=[_RATE_LIMIT_ID],
        responses={200: ProjectRateLimitOut},
    )
    def retrieve(
        self, request: Request, project_id: str, rate_limit_id: str, org_id: str | None = None
    ) -> Response:
        row = selectors.project_rate_limit_get(project_id=self.project.project.pk, public_id=rate_limit_id)
        return Response(ProjectRateLimitOut(row).data)

    @admin_op(
        "updateProjectRateLimits",
        implied_operation_id="updateProjectRateLimitsOfCallerOrganization",
        parameters=[_RATE_LIMIT_ID],
        request=RateLimitUpdateIn,
        responses={200: ProjectRateLimitOut},
        description="Creates the model's limits when it has none yet. Organization owners only.",
    )
    def modify(
        self, request: Request, project_id: str, rate_limit_id: str, org_id: str | None = None
    ) -> Response:
        self.scope.require_owner()
        data = parse(RateLimitUpdateIn, request.data)
        row = services.project_rate_limit_set(
            project=self.project.project, model=_model_of(rate_limit_id), actor=self.scope.actor, **data
        )
        return Response(ProjectRateLimitOut(row).data)

    @admin_op(
        "deleteProjectRateLimit",
        implied_operation_id="deleteProjectRateLimitOfCallerOrganization",
        parameters=[_RATE_LIMIT_ID],
        responses={200: AdminObjectDeletedOut},
        description="Removes the model's limits. Organization owners only.",
    )
    def destroy(
        self, request: Request, project_id: str, rate_limit_id: str, org_id: str | None = None
    ) -> Response:
        self.scope.require_owner()
        row = selectors.project_rate_limit_get(project_id=self.project.project.pk, public_id=rate_limit_id)
        services.project_rate_limit_delete(rate_limit=row, actor=self.scope.actor)
        return _deleted("project.rate_limit", rate_limit_id)
