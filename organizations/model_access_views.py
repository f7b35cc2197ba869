"""Model allow-lists in the administration API (organizations.model_access enforces them).

OpenAI keeps project model permissions in its dashboard only, so the shape is ours, in the style
of its project objects: `…/projects/{project_id}/model_access` (organization owners change it,
anyone who sees the project reads it) and `…/projects/{project_id}/api_keys/{key_id}/model_access`
(project owners change it). `allowed_models` lists model ids or glob patterns; `[]` allows all.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.api import parse
from organizations import selectors
from organizations.models import ApiKey, Project
from organizations.services.model_access import api_key_model_access_set, project_model_access_set
from organizations.views import PROJECT_KEY_TYPES, AdminView, _project_scope, _scope, admin_op

_HELP = "Model ids or glob patterns (`gpt-4o*`, `meta-llama/*`); an empty list allows every model."


class ModelAccessUpdateIn(serializers.Serializer[Any]):
    allowed_models = serializers.ListField(child=serializers.CharField(max_length=300), help_text=_HELP)


class ProjectModelAccessOut(serializers.Serializer[Project]):
    object = serializers.SerializerMethodField()
    project_id = serializers.CharField(source="public_id")
    allowed_models = serializers.ListField(child=serializers.CharField(), help_text=_HELP)

    def get_object(self, project: Project) -> str:
        return "project.model_access"


class ApiKeyModelAccessOut(serializers.Serializer[ApiKey]):
    object = serializers.SerializerMethodField()
    api_key_id = serializers.CharField(source="public_id")
    allowed_models = serializers.ListField(
        child=serializers.CharField(), help_text=_HELP + " Applies on top of the project's list."
    )

    def get_object(self, key: ApiKey) -> str:
        return "project.api_key.model_access"


class ProjectModelAccess(AdminView):
    @admin_op(
        "retrieveProjectModelAccess",
        implied_operation_id="retrieveProjectModelAccessOfCallerOrganization",
        responses={200: ProjectModelAccessOut},
    )
    def get(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        access = _project_scope(_scope(request, org_id), project_id)
        return Response(ProjectModelAccessOut(access.project).data)

    @admin_op(
        "updateProjectModelAccess",
        implied_operation_id="updateProjectModelAccessOfCallerOrganization",
        request=ModelAccessUpdateIn,
        responses={200: ProjectModelAccessOut},
        description="Replaces the project's allow-list. Organization owners only.",
    )
    def post(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        scope = _scope(request, org_id)
        access = _project_scope(scope, project_id)
        scope.require_owner()
        data = parse(ModelAccessUpdateIn, request.data)
        project = project_model_access_set(
            project=access.project, allowed_models=data["allowed_models"], actor=scope.actor
        )
        return Response(ProjectModelAccessOut(project).data)


class ProjectKeyModelAccess(AdminView):
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
        "retrieveProjectApiKeyModelAccess",
        implied_operation_id="retrieveProjectApiKeyModelAccessOfCallerOrganization",
        responses={200: ApiKeyModelAccessOut},
    )
    def get(self, request: Request, project_id: str, key_id: str, org_id: str | None = None) -> Response:
        _, key = self._key(request, project_id, key_id, org_id)
        return Response(ApiKeyModelAccessOut(key).data)

    @admin_op(
        "updateProjectApiKeyModelAccess",
        implied_operation_id="updateProjectApiKeyModelAccessOfCallerOrganization",
        request=ModelAccessUpdateIn,
        responses={200: ApiKeyModelAccessOut},
        description="Replaces the key's own allow-list. Project or organization owners.",
    )
    def post(self, request: Request, project_id: str, key_id: str, org_id: str | None = None) -> Response:
        access, key = self._key(request, project_id, key_id, org_id)
        access.require_manage()
        data = parse(ModelAccessUpdateIn, request.data)
        key = api_key_model_access_set(
            key=key, allowed_models=data["allowed_models"], actor=access.scope.actor
        )
        return Response(ApiKeyModelAccessOut(key).data)
