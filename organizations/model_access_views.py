"""Model allow-lists in the administration API (organizations.model_access enforces them).

OpenAI keeps project model permissions in its dashboard only, so the shape is ours, in the style
of its project objects: `…/projects/{project_id}/model_access` (organization owners change it,
anyone who sees the project reads it) and `…/projects/{project_id}/api_keys/{key_id}/model_access`
(project owners change it). `allowed_models` lists model ids or glob patterns; `[]` allows all.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.api import StrictIn, parse
from organizations.models import ApiKey, Project
from organizations.services.model_access import api_key_model_access_set, project_model_access_set
from organizations.views import AdminViewSet, admin_op, project_key_visible

_HELP = "Model ids or glob patterns (`gpt-4o*`, `meta-llama/*`); an empty list allows every model."


class ModelAccessUpdateIn(StrictIn):
    allowed_models = serializers.ListField(child=serializers.CharField(max_length=300), help_text=_HELP)


# One object each, though a `list` action serves it (the router's route for a resource without an id).
@extend_schema_serializer(many=False)
class ProjectModelAccessOut(serializers.Serializer[Project]):
    object = serializers.SerializerMethodField()
    project_id = serializers.CharField(source="public_id")
    allowed_models = serializers.ListField(child=serializers.CharField(), help_text=_HELP)

    def get_object(self, project: Project) -> str:
        return "project.model_access"


@extend_schema_serializer(many=False)
class ApiKeyModelAccessOut(serializers.Serializer[ApiKey]):
    object = serializers.SerializerMethodField()
    api_key_id = serializers.CharField(source="public_id")
    allowed_models = serializers.ListField(
        child=serializers.CharField(), help_text=_HELP + " Applies on top of the project's list."
    )

    def get_object(self, key: ApiKey) -> str:
        return "project.api_key.model_access"


class ProjectModelAccess(AdminViewSet):
    @admin_op(
        "retrieveProjectModelAccess",
        implied_operation_id="retrieveProjectModelAccessOfCallerOrganization",
        responses={200: ProjectModelAccessOut},
    )
    def list(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        access = self.project
        return Response(ProjectModelAccessOut(access.project).data)

    @admin_op(
        "updateProjectModelAccess",
        implied_operation_id="updateProjectModelAccessOfCallerOrganization",
        request=ModelAccessUpdateIn,
        responses={200: ProjectModelAccessOut},
        description="Replaces the project's allow-list. Organization owners only.",
    )
    def create(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        scope, access = self.scope, self.project
        scope.require_owner()
        data = parse(ModelAccessUpdateIn, request.data)
        project = project_model_access_set(
            project=access.project, allowed_models=data["allowed_models"], actor=scope.actor
        )
        return Response(ProjectModelAccessOut(project).data)


class ProjectKeyModelAccess(AdminViewSet):
    def _key(self, key_id: str) -> tuple[Any, ApiKey]:
        return self.project, project_key_visible(self.project, key_id)

    @admin_op(
        "retrieveProjectApiKeyModelAccess",
        implied_operation_id="retrieveProjectApiKeyModelAccessOfCallerOrganization",
        responses={200: ApiKeyModelAccessOut},
    )
    def list(self, request: Request, project_id: str, key_id: str, org_id: str | None = None) -> Response:
        _, key = self._key(key_id)
        return Response(ApiKeyModelAccessOut(key).data)

    @admin_op(
        "updateProjectApiKeyModelAccess",
        implied_operation_id="updateProjectApiKeyModelAccessOfCallerOrganization",
        request=ModelAccessUpdateIn,
        responses={200: ApiKeyModelAccessOut},
        description="Replaces the key's own allow-list. Project or organization owners.",
    )
    def create(self, request: Request, project_id: str, key_id: str, org_id: str | None = None) -> Response:
        access, key = self._key(key_id)
        access.require_manage()
        data = parse(ModelAccessUpdateIn, request.data)
        key = api_key_model_access_set(
            key=key, allowed_models=data["allowed_models"], actor=access.scope.actor
        )
        return Response(ApiKeyModelAccessOut(key).data)
