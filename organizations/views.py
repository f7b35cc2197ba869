"""The administration API (`/v1/organization…`): one DRF viewset per resource, thin actions over
organizations.services, registered on a router in organizations/urls.py.

Access, decided once per request (AdminViewSet.initial) from the principal:
- an admin key acts as an owner of its own organization and sees no other (404); it works only
  while the user who made it is still an owner there (the key cache checks that);
- a JWT user acts with their role in the organization and, in a project, also with their
  project role. Owners manage everything. A reader sees the organization (its members,
  projects, project members, service accounts and rate limits) but not its secrets: no invites,
  no admin keys, no audit log, and of the API keys only their own. Someone with no organization
  role, only projects (every new user has their Default Project), sees the organization's name
  and their own projects: in those, a project owner manages members and keys, a project member
  reads the project and manages their own keys.
Organizations and projects the caller cannot see answer 404; visible objects with too little
role answer 403; keys the caller may not see answer 404.
Routes without `{org_id}` act in the caller's organization (the admin key's, or the JWT's
OpenAI-Organization / default selection), as jan-server and OpenAI's admin SDK call them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.viewsets import ViewSet

from accounts import selectors as account_selectors
from accounts.auth import Principal
from accounts.authentication import AdminAuthentication, principal_of
from gateway.api import ERROR_RESPONSES, parse, query_flag
from gateway.errors import Forbidden, InvalidRequest, NotFound
from gateway.pagination import page_params, paginate
from organizations import selectors, services
from organizations.models import ApiKey, Invite, Organization, OrganizationMember, Project, ProjectMember
from organizations.serializers import (
    AdminKeyCreateIn,
    AdminObjectDeletedOut,
    ApiKeyCreatedOut,
    ApiKeyListOut,
    ApiKeyOut,
    ApiKeyRateLimitOut,
    AuditLogListOut,
    AuditLogOut,
    InviteCreateIn,
    InviteListOut,
    InviteOut,
    InviteVerificationIn,
    OrganizationCreateIn,
    OrganizationKeyCreateIn,
    OrganizationListOut,
    OrganizationOut,
    OrganizationUpdateIn,
    OrganizationUserAddIn,
    OrganizationUserListOut,
    OrganizationUserOut,
    OrganizationUserUpdateIn,
    ProjectCreateIn,
    ProjectKeyCreateIn,
    ProjectListOut,
    ProjectOut,
    ProjectUpdateIn,
    ProjectUserAddIn,
    ProjectUserListOut,
    ProjectUserOut,
    ProjectUserUpdateIn,
    RateLimitUpdateIn,
    ServiceAccountCreatedOut,
    ServiceAccountCreateIn,
    ServiceAccountListOut,
    ServiceAccountOut,
)
from organizations.services import Actor

OWNER = OrganizationMember.Role.OWNER
READER = OrganizationMember.Role.READER

# --- Access --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    principal: Principal
    organization: Organization
    role: str | None  # organization role; None: the caller only belongs to some of its projects
    actor: Actor

    def require_read(self) -> None:
        if self.role not in (OWNER, READER):
            raise Forbidden("You are not a member of this organization.")

    def require_owner(self) -> None:
        if self.role != OWNER:
            raise Forbidden("Only organization owners can do this.")

    def key_owner_filter(self, *, owners_only: bool) -> int | None:
        """Whose organization-level keys the caller may see: everyone's (None) for an owner, a
        reader only their own; admin keys (owners_only) and callers without a role get 403."""
        if owners_only:
            self.require_owner()
        else:
            self.require_read()
        return None if self.role == OWNER else (self.principal.user_id or 0)


@dataclass(frozen=True)
class ProjectScope:
    scope: Scope
    project: Project
    manage: bool  # organization owner or project owner
    member: bool  # has a project membership (owner or member)

    def require_manage(self) -> None:
        if not self.manage:
            raise Forbidden("Only project or organization owners can do this.")

    @property
    def key_owner_filter(self) -> int | None:
        """Whose keys in the project the caller may see: all (None) for those who manage it,
        anyone else only their own."""
        return None if self.manage else (self.scope.principal.user_id or 0)


def _actor(principal: Principal) -> Actor:
    if principal.kind == "api_key":
        return Actor(
            type="api_key",
            id=principal.api_key_public_id or "",
            user_id=principal.user_id,
            user_public_id=principal.user_public_id or "",
        )
    return Actor(
        type="user",
        id=principal.user_public_id or "",
        user_id=principal.user_id,
        user_public_id=principal.user_public_id or "",
    )


def organization_scope(request: Request, org_id: str | None) -> Scope:
    principal = principal_of(request)
    if org_id is None:
        organization = selectors.organization_list_active(organization_id=principal.organization_id).first()
        if organization is None:
            raise NotFound("The selected organization no longer exists.", code="organization_not_found")
    else:
        organization = selectors.organization_get_active(public_id=org_id)
    role: str | None
    if principal.is_admin_key:
        if organization.pk != principal.organization_id:
            raise NotFound(
                f"No organization with id '{org_id}'.", param="org_id", code="organization_not_found"
            )
        role = OWNER
    else:
        user_id = principal.user_id or 0
        role = selectors.organization_role(organization_id=organization.pk, user_id=user_id)
        if role is None and not selectors.organization_has_project_member(
            organization_id=organization.pk, user_id=user_id
        ):
            raise NotFound(
                f"No organization with id '{organization.public_id}'.",
                param="org_id",
                code="organization_not_found",
            )
    return Scope(principal=principal, organization=organization, role=role, actor=_actor(principal))


def project_scope(scope: Scope, project_id: str) -> ProjectScope:
    project = selectors.project_get(organization_id=scope.organization.pk, public_id=project_id)
    if scope.principal.is_admin_key:
        return ProjectScope(scope, project, manage=True, member=False)
    project_role = selectors.project_role(project_id=project.pk, user_id=scope.principal.user_id or 0)
    if scope.role is None and project_role is None:
        raise NotFound(f"No project with id '{project_id}'.", param="project_id", code="project_not_found")
    manage = scope.role == OWNER or project_role == ProjectMember.Role.OWNER
    return ProjectScope(scope, project, manage=manage, member=project_role is not None)


def _page(request: Request, queryset: Any, serializer: type[Serializer[Any]], **kwargs: Any) -> Response:
    def serialize(row: Any) -> dict[str, Any]:
        return dict(serializer(row).data)

    return Response(paginate(queryset, page_params(request.query_params), serialize, **kwargs))


def _deleted(kind: str, public_id: str) -> Response:
    return Response(
        AdminObjectDeletedOut({"object": f"{kind}.deleted", "id": public_id, "deleted": True}).data
    )


def _expires_at(data: dict[str, Any]) -> datetime | None:
    raw = data.get("expires_at")
    return datetime.fromtimestamp(raw, tz=UTC) if raw is not None else None


# --- Schema helpers --------------------------------------------------------------------------

PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit", {"type": "integer", "minimum": 1, "maximum": 100}, description="1-100, default 20"
    ),
    OpenApiParameter("order", str, enum=["asc", "desc"]),
    OpenApiParameter("after", str, description="cursor: the id of the last object of the previous page"),
]


ActionT = TypeVar("ActionT", bound=Callable[..., Any])


def admin_op(
    operation_id: str, *, implied_operation_id: str | None = None, **kwargs: Any
) -> Callable[[ActionT], ActionT]:
    """@extend_schema for this API. A view mounted both under /{org_id}/… and in the org-implied
    form gets a second operation id for the implied path, so ids stay unique."""

    class AdminSchema(AutoSchema):
        def get_operation_id(self) -> str:
            if implied_operation_id and "{org_id}" not in self.path:
                return implied_operation_id
            return operation_id

    def decorator(function: ActionT) -> ActionT:
        function.schema = AdminSchema  # type: ignore[attr-defined]  # extend_schema builds on it
        responses = {**kwargs.pop("responses", {}), **ERROR_RESPONSES}
        return extend_schema(tags=["Administration"], responses=responses, **kwargs)(function)

    return decorator


class AdminViewSet(ViewSet):
    # Every action starts from the organization (and project) its route names, resolved once per
    # request in initial(), after authentication and before the action runs. Routes without
    # `{org_id}` act in the caller's organization. Methods the route does not serve (405) and
    # OPTIONS describe the route without looking at the caller's standing.
    authentication_classes = [AdminAuthentication]
    lookup_value_converter = "str"
    scope: Scope
    project: ProjectScope

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.method is None or request.method.lower() not in self.action_map or not self.scoped():
            return
        self.scope = organization_scope(request, kwargs.get("org_id"))
        if "project_id" in kwargs:
            self.project = project_scope(self.scope, kwargs["project_id"])

    def scoped(self) -> bool:
        return True


# --- Organizations -------------------------------------------------------------------------------


class OrganizationViewSet(AdminViewSet):
    lookup_url_kwarg = "org_id"
    lookup_value_converter = "org"

    def scoped(self) -> bool:
        return bool(self.detail)  # listing and creating organizations act on no organization yet

    @admin_op("listOrganizations", responses={200: OrganizationListOut}, parameters=PAGE_PARAMETERS)
    def list(self, request: Request) -> Response:
        principal = principal_of(request)
        if principal.is_admin_key:
            organizations = selectors.organization_list_active(organization_id=principal.organization_id)
        else:
            organizations = selectors.organization_list_for_user(user_id=principal.user_id or 0)
        return _page(request, organizations, OrganizationOut)

    @admin_op("createOrganization", request=OrganizationCreateIn, responses={201: OrganizationOut})
    def create(self, request: Request) -> Response:
        principal = principal_of(request)
        if principal.is_admin_key or principal.user_id is None:
            raise Forbidden("Admin keys act only in their own organization; sign in to create one.")
        data = parse(OrganizationCreateIn, request.data)
        organization = services.organization_create(
            owner=account_selectors.user_get(user_id=principal.user_id), actor=_actor(principal), **data
        )
        return Response(OrganizationOut(organization).data, status=201)

    @admin_op("retrieveOrganization", responses={200: OrganizationOut})
    def retrieve(self, request: Request, org_id: str) -> Response:
        # Anyone who sees the organization (a role, or only a project in it) reads its name.
        return Response(OrganizationOut(self.scope.organization).data)

    @admin_op("updateOrganization", request=OrganizationUpdateIn, responses={200: OrganizationOut})
    def partial_update(self, request: Request, org_id: str) -> Response:
        self.scope.require_owner()
        data = parse(OrganizationUpdateIn, request.data)
        organization = services.organization_update(
            organization=self.scope.organization, actor=self.scope.actor, **data
        )
        return Response(OrganizationOut(organization).data)

    @admin_op("deleteOrganization", responses={200: AdminObjectDeletedOut})
    def destroy(self, request: Request, org_id: str) -> Response:
        self.scope.require_owner()
        services.organization_delete(organization=self.scope.organization, actor=self.scope.actor)
        return _deleted("organization", org_id)


# --- Organization and admin keys -----------------------------------------------------------------


class _OrganizationLevelKeyViewSet(AdminViewSet):
    # Organization keys and admin keys: the same actions over a different key type.
    lookup_url_kwarg = "key_id"
    key_types: list[str]
    owners_only: bool
    create_in: type[Serializer[Any]]

    def list(self, request: Request, org_id: str | None = None) -> Response:
        keys = selectors.api_key_list(
            organization_id=self.scope.organization.pk,
            key_types=self.key_types,
            owner_user_id=self.scope.key_owner_filter(owners_only=self.owners_only),
        )
        return _page(request, keys, ApiKeyOut)

    def create(self, request: Request, org_id: str | None = None) -> Response:
        self.scope.require_owner()
        data = parse(self.create_in, request.data)
        key, raw = services.api_key_create(
            organization=self.scope.organization,
            actor=self.scope.actor,
            key_type=data["type"],
            name=data["name"],
            description=data["description"],
            owner_user_id=self.scope.principal.user_id,
            expires_in=data.get("expires_in"),
            expires_at=_expires_at(data),
        )
        return Response(ApiKeyCreatedOut(key, context={"raw_key": raw}).data, status=201)

    def retrieve(self, request: Request, key_id: str, org_id: str | None = None) -> Response:
        return Response(ApiKeyOut(self._visible_key(key_id)).data)

    def destroy(self, request: Request, key_id: str, org_id: str | None = None) -> Response:
        self.scope.require_owner()
        key = selectors.api_key_get(
            organization_id=self.scope.organization.pk, key_types=self.key_types, public_id=key_id
        )
        services.api_key_revoke(key=key, actor=self.scope.actor)
        return _deleted(ApiKeyOut().get_object(key), key_id)

    def _visible_key(self, key_id: str) -> ApiKey:
        return selectors.api_key_get(
            organization_id=self.scope.organization.pk,
            key_types=self.key_types,
            public_id=key_id,
            owner_user_id=self.scope.key_owner_filter(owners_only=self.owners_only),
        )


@extend_schema_view(
    list=admin_op(
        "listOrganizationApiKeys",
        implied_operation_id="listApiKeysOfCallerOrganization",
        responses={200: ApiKeyListOut},
        parameters=PAGE_PARAMETERS,
    ),
    create=admin_op(
        "createOrganizationApiKey",
        implied_operation_id="createApiKeyInCallerOrganization",
        request=OrganizationKeyCreateIn,
        responses={201: ApiKeyCreatedOut},
    ),
    retrieve=admin_op(
        "retrieveOrganizationApiKey",
        implied_operation_id="retrieveApiKeyOfCallerOrganization",
        responses={200: ApiKeyOut},
    ),
    destroy=admin_op(
        "deleteOrganizationApiKey",
        implied_operation_id="deleteApiKeyOfCallerOrganization",
        responses={200: AdminObjectDeletedOut},
    ),
)
class OrganizationApiKeyViewSet(_OrganizationLevelKeyViewSet):
    key_types = [ApiKey.Type.ORGANIZATION]
    owners_only = False  # readers see their own organization keys; admin keys are owners' alone
    create_in = OrganizationKeyCreateIn

    @admin_op(
        "retrieveOrganizationApiKeyRateLimits",
        implied_operation_id="retrieveOrganizationApiKeyRateLimitsOfCallerOrganization",
        responses={200: ApiKeyRateLimitOut},
    )
    @action(detail=True, methods=["get"], url_path="rate_limits")
    def rate_limits(self, request: Request, key_id: str, org_id: str | None = None) -> Response:
        return Response(ApiKeyRateLimitOut(self._visible_key(key_id)).data)

    @admin_op(
        "updateOrganizationApiKeyRateLimits",
        implied_operation_id="updateOrganizationApiKeyRateLimitsOfCallerOrganization",
        request=RateLimitUpdateIn,
        responses={200: ApiKeyRateLimitOut},
        description="Organization owners only.",
    )
    @rate_limits.mapping.post
    def rate_limits_update(self, request: Request, key_id: str, org_id: str | None = None) -> Response:
        key = self._visible_key(key_id)
        self.scope.require_owner()
        data = parse(RateLimitUpdateIn, request.data)
        key = services.api_key_limits_set(key=key, actor=self.scope.actor, **data)
        return Response(ApiKeyRateLimitOut(key).data)


@extend_schema_view(
    list=admin_op("listAdminApiKeys", responses={200: ApiKeyListOut}, parameters=PAGE_PARAMETERS),
    create=admin_op("createAdminApiKey", request=AdminKeyCreateIn, responses={201: ApiKeyCreatedOut}),
    retrieve=admin_op("retrieveAdminApiKey", responses={200: ApiKeyOut}),
    destroy=admin_op("deleteAdminApiKey", responses={200: AdminObjectDeletedOut}),
)
class AdminApiKeyViewSet(_OrganizationLevelKeyViewSet):
    key_types = [ApiKey.Type.ADMIN]
    owners_only = True
    create_in = AdminKeyCreateIn


# --- Projects -------------------------------------------------------------------------------------


class ProjectViewSet(AdminViewSet):
    lookup_url_kwarg = "project_id"

    @admin_op(
        "listProjects",
        implied_operation_id="listProjectsOfCallerOrganization",
        responses={200: ProjectListOut},
        parameters=[*PAGE_PARAMETERS, OpenApiParameter("include_archived", bool)],
    )
    def list(self, request: Request, org_id: str | None = None) -> Response:
        include_archived = bool(query_flag(request.query_params, "include_archived"))
        projects = selectors.project_list_admin(
            organization_id=self.scope.organization.pk,
            include_archived=include_archived,
            member_user_id=None if self.scope.role else self.scope.principal.user_id,
        )
        return _page(request, projects, ProjectOut)

    @admin_op(
        "createProject",
        implied_operation_id="createProjectInCallerOrganization",
        request=ProjectCreateIn,
        responses={201: ProjectOut},
    )
    def create(self, request: Request, org_id: str | None = None) -> Response:
        self.scope.require_owner()
        data = parse(ProjectCreateIn, request.data)
        project = services.project_create(
            organization=self.scope.organization, name=data["name"], actor=self.scope.actor
        )
        return Response(ProjectOut(project).data, status=201)

    @admin_op(
        "retrieveProject",
        implied_operation_id="retrieveProjectOfCallerOrganization",
        responses={200: ProjectOut},
    )
    def retrieve(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        return Response(ProjectOut(self.project.project).data)

    @admin_op(
        "updateProject",
        implied_operation_id="updateProjectOfCallerOrganization",
        request=ProjectUpdateIn,
        responses={200: ProjectOut},
    )
    def partial_update(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        self.scope.require_owner()
        data = parse(ProjectUpdateIn, request.data)
        project = services.project_update(
            project=self.project.project, name=data["name"], actor=self.scope.actor
        )
        return Response(ProjectOut(project).data)

    @admin_op(
        "modifyProject",
        implied_operation_id="modifyProjectOfCallerOrganization",
        request=ProjectUpdateIn,
        responses={200: ProjectOut},
        description="The same as PATCH; OpenAI's admin API updates with POST.",
    )
    def modify(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        return self.partial_update(request, project_id, org_id)

    @admin_op(
        "deleteProject",
        implied_operation_id="deleteProjectOfCallerOrganization",
        responses={200: AdminObjectDeletedOut},
    )
    def destroy(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        self.scope.require_owner()
        services.project_delete(project=self.project.project, actor=self.scope.actor)
        return _deleted("organization.project", project_id)

    @admin_op(
        "archiveProject",
        implied_operation_id="archiveProjectOfCallerOrganization",
        request=None,
        responses={200: ProjectOut},
    )
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        self.scope.require_owner()
        project = services.project_archive(project=self.project.project, actor=self.scope.actor)
        return Response(ProjectOut(project).data)


# --- Project keys ---------------------------------------------------------------------------------

PROJECT_KEY_TYPES = [ApiKey.Type.PROJECT, ApiKey.Type.SERVICE, ApiKey.Type.EPHEMERAL]


def project_key_visible(access: ProjectScope, key_id: str) -> ApiKey:
    """A key of the project that the caller may see (those who manage the project see all)."""
    return selectors.api_key_get(
        organization_id=access.project.organization_id,
        key_types=PROJECT_KEY_TYPES,
        project_id=access.project.pk,
        public_id=key_id,
        owner_user_id=access.key_owner_filter,
    )


class ProjectApiKeyViewSet(AdminViewSet):
    lookup_url_kwarg = "key_id"

    @admin_op(
        "listProjectApiKeys",
        implied_operation_id="listProjectApiKeysOfCallerOrganization",
        responses={200: ApiKeyListOut},
        parameters=PAGE_PARAMETERS,
    )
    def list(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        keys = selectors.api_key_list(
            organization_id=self.project.project.organization_id,
            key_types=PROJECT_KEY_TYPES,
            project_id=self.project.project.pk,
            owner_user_id=self.project.key_owner_filter,
        )
        return _page(request, keys, ApiKeyOut)

    @admin_op(
        "createProjectApiKey",
        implied_operation_id="createProjectApiKeyOfCallerOrganization",
        request=ProjectKeyCreateIn,
        responses={201: ApiKeyCreatedOut},
    )
    def create(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        access = self.project
        data = parse(ProjectKeyCreateIn, request.data)
        service_account = None
        if data["type"] == ApiKey.Type.SERVICE:
            access.require_manage()
            service_account = selectors.service_account_get(
                project_id=access.project.pk, public_id=data["service_account_id"]
            )
        elif not (access.manage or access.member):
            raise Forbidden("Only members of the project can create its keys.")
        key, raw = services.api_key_create(
            organization=self.scope.organization,
            actor=self.scope.actor,
            key_type=data["type"],
            name=data["name"],
            description=data["description"],
            project=access.project,
            owner_user_id=self.scope.principal.user_id,
            service_account=service_account,
            expires_in=data.get("expires_in"),
            expires_at=_expires_at(data),
        )
        return Response(ApiKeyCreatedOut(key, context={"raw_key": raw}).data, status=201)

    @admin_op(
        "retrieveProjectApiKey",
        implied_operation_id="retrieveProjectApiKeyOfCallerOrganization",
        responses={200: ApiKeyOut},
    )
    def retrieve(self, request: Request, project_id: str, key_id: str, org_id: str | None = None) -> Response:
        return Response(ApiKeyOut(self._visible_key(key_id)).data)

    @admin_op(
        "deleteProjectApiKey",
        implied_operation_id="deleteProjectApiKeyOfCallerOrganization",
        responses={200: AdminObjectDeletedOut},
    )
    def destroy(self, request: Request, project_id: str, key_id: str, org_id: str | None = None) -> Response:
        key = self._visible_key(key_id)
        own_key = (
            self.project.member
            and key.owner_user_id is not None
            and key.owner_user_id == self.scope.principal.user_id
        )
        if not (self.project.manage or own_key):
            raise Forbidden("Only project owners can delete other people's keys.")
        services.api_key_revoke(key=key, actor=self.scope.actor)
        return _deleted("organization.project.api_key", key_id)

    @admin_op(
        "retrieveProjectApiKeyRateLimits",
        implied_operation_id="retrieveProjectApiKeyRateLimitsOfCallerOrganization",
        responses={200: ApiKeyRateLimitOut},
    )
    @action(detail=True, methods=["get"], url_path="rate_limits")
    def rate_limits(
        self, request: Request, project_id: str, key_id: str, org_id: str | None = None
    ) -> Response:
        return Response(ApiKeyRateLimitOut(self._visible_key(key_id)).data)

    @admin_op(
        "updateProjectApiKeyRateLimits",
        implied_operation_id="updateProjectApiKeyRateLimitsOfCallerOrganization",
        request=RateLimitUpdateIn,
        responses={200: ApiKeyRateLimitOut},
        description="Project or organization owners.",
    )
    @rate_limits.mapping.post
    def rate_limits_update(
        self, request: Request, project_id: str, key_id: str, org_id: str | None = None
    ) -> Response:
        key = self._visible_key(key_id)
        self.project.require_manage()
        data = parse(RateLimitUpdateIn, request.data)
        key = services.api_key_limits_set(key=key, actor=self.scope.actor, **data)
        return Response(ApiKeyRateLimitOut(key).data)

    def _visible_key(self, key_id: str) -> ApiKey:
        return project_key_visible(self.project, key_id)


# --- Members --------------------------------------------------------------------------------------


class OrganizationUserViewSet(AdminViewSet):
    lookup_url_kwarg = "user_id"

    @admin_op(
        "listOrganizationUsers",
        implied_operation_id="listUsersOfCallerOrganization",
        responses={200: OrganizationUserListOut},
        parameters=PAGE_PARAMETERS,
    )
    def list(self, request: Request, org_id: str | None = None) -> Response:
        self.scope.require_read()
        members = selectors.organization_member_list(organization_id=self.scope.organization.pk)
        return _page(request, members, OrganizationUserOut, id_field="user_public_id")

    @admin_op(
        "addOrganizationUser",
        implied_operation_id="addUserToCallerOrganization",
        request=OrganizationUserAddIn,
        responses={201: OrganizationUserOut},
    )
    def create(self, request: Request, org_id: str | None = None) -> Response:
        self.scope.require_owner()
        data = parse(OrganizationUserAddIn, request.data)
        member = services.organization_member_add(
            organization=self.scope.organization, actor=self.scope.actor, **data
        )
        return Response(OrganizationUserOut(member).data, status=201)

    @admin_op(
        "retrieveOrganizationUser",
        implied_operation_id="retrieveUserOfCallerOrganization",
        responses={200: OrganizationUserOut},
    )
    def retrieve(self, request: Request, user_id: str, org_id: str | None = None) -> Response:
        self.scope.require_read()
        member = selectors.organization_member_get(
            organization_id=self.scope.organization.pk, user_public_id=user_id
        )
        return Response(OrganizationUserOut(member).data)

    @admin_op(
        "updateOrganizationUser",
        implied_operation_id="updateUserOfCallerOrganization",
        request=OrganizationUserUpdateIn,
        responses={200: OrganizationUserOut},
    )
    def partial_update(self, request: Request, user_id: str, org_id: str | None = None) -> Response:
        self.scope.require_owner()
        member = selectors.organization_member_get(
            organization_id=self.scope.organization.pk, user_public_id=user_id
        )
        data = parse(OrganizationUserUpdateIn, request.data)
        member = services.organization_member_update(member=member, role=data["role"], actor=self.scope.actor)
        return Response(OrganizationUserOut(member).data)

    @admin_op(
        "modifyOrganizationUser",
        implied_operation_id="modifyUserOfCallerOrganization",
        request=OrganizationUserUpdateIn,
        responses={200: OrganizationUserOut},
    )
    def modify(self, request: Request, user_id: str, org_id: str | None = None) -> Response:
        return self.partial_update(request, user_id, org_id)

    @admin_op(
        "deleteOrganizationUser",
        implied_operation_id="deleteUserOfCallerOrganization",
        responses={200: AdminObjectDeletedOut},
        description="Owners remove anyone; any member may remove themselves (leave).",
    )
    def destroy(self, request: Request, user_id: str, org_id: str | None = None) -> Response:
        if user_id != self.scope.principal.user_public_id or self.scope.role is None:
            self.scope.require_owner()
        member = selectors.organization_member_get(
            organization_id=self.scope.organization.pk, user_public_id=user_id
        )
        services.organization_member_remove(member=member, actor=self.scope.actor)
        return _deleted("organization.user", user_id)


class ProjectUserViewSet(AdminViewSet):
    lookup_url_kwarg = "user_id"

    @admin_op(
        "listProjectUsers",
        implied_operation_id="listProjectUsersOfCallerOrganization",
        responses={200: ProjectUserListOut},
        parameters=PAGE_PARAMETERS,
    )
    def list(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        members = selectors.project_member_list(project_id=self.project.project.pk)
        return _page(request, members, ProjectUserOut, id_field="user_public_id")

    @admin_op(
        "addProjectUser",
        implied_operation_id="addProjectUserOfCallerOrganization",
        request=ProjectUserAddIn,
        responses={201: ProjectUserOut},
    )
    def create(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        self.project.require_manage()
        data = parse(ProjectUserAddIn, request.data)
        member = services.project_member_add(project=self.project.project, actor=self.scope.actor, **data)
        return Response(ProjectUserOut(member).data, status=201)

    @admin_op(
        "retrieveProjectUser",
        implied_operation_id="retrieveProjectUserOfCallerOrganization",
        responses={200: ProjectUserOut},
    )
    def retrieve(
        self, request: Request, project_id: str, user_id: str, org_id: str | None = None
    ) -> Response:
        member = selectors.project_member_get(project_id=self.project.project.pk, user_public_id=user_id)
        return Response(ProjectUserOut(member).data)

    @admin_op(
        "updateProjectUser",
        implied_operation_id="updateProjectUserOfCallerOrganization",
        request=ProjectUserUpdateIn,
        responses={200: ProjectUserOut},
    )
    def partial_update(
        self, request: Request, project_id: str, user_id: str, org_id: str | None = None
    ) -> Response:
        self.project.require_manage()
        member = selectors.project_member_get(project_id=self.project.project.pk, user_public_id=user_id)
        data = parse(ProjectUserUpdateIn, request.data)
        member = services.project_member_update(member=member, role=data["role"], actor=self.scope.actor)
        return Response(ProjectUserOut(member).data)

    @admin_op(
        "modifyProjectUser",
        implied_operation_id="modifyProjectUserOfCallerOrganization",
        request=ProjectUserUpdateIn,
        responses={200: ProjectUserOut},
    )
    def modify(self, request: Request, project_id: str, user_id: str, org_id: str | None = None) -> Response:
        return self.partial_update(request, project_id, user_id, org_id)

    @admin_op(
        "deleteProjectUser",
        implied_operation_id="deleteProjectUserOfCallerOrganization",
        responses={200: AdminObjectDeletedOut},
    )
    def destroy(self, request: Request, project_id: str, user_id: str, org_id: str | None = None) -> Response:
        if not (self.project.member and user_id == self.scope.principal.user_public_id):
            self.project.require_manage()
        member = selectors.project_member_get(project_id=self.project.project.pk, user_public_id=user_id)
        services.project_member_remove(member=member, actor=self.scope.actor)
        return _deleted("organization.project.user", user_id)


# --- Service accounts -----------------------------------------------------------------------------


class ServiceAccountViewSet(AdminViewSet):
    lookup_url_kwarg = "service_account_id"

    @admin_op(
        "listProjectServiceAccounts",
        implied_operation_id="listProjectServiceAccountsOfCallerOrganization",
        responses={200: ServiceAccountListOut},
        parameters=PAGE_PARAMETERS,
    )
    def list(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        accounts = selectors.service_account_list(project_id=self.project.project.pk)
        return _page(request, accounts, ServiceAccountOut)

    @admin_op(
        "createProjectServiceAccount",
        implied_operation_id="createProjectServiceAccountOfCallerOrganization",
        request=ServiceAccountCreateIn,
        responses={201: ServiceAccountCreatedOut},
    )
    def create(self, request: Request, project_id: str, org_id: str | None = None) -> Response:
        self.project.require_manage()
        if self.project.project.status != Project.Status.ACTIVE:
            raise InvalidRequest(
                "An archived project cannot get new service accounts.",
                param="project_id",
                code="project_archived",
            )
        data = parse(ServiceAccountCreateIn, request.data)
        account, key, raw = services.service_account_create(
            project=self.project.project, name=data["name"], actor=self.scope.actor
        )
        created = ServiceAccountCreatedOut(account, context={"api_key": key, "raw_key": raw})
        return Response(created.data, status=201)

    @admin_op(
        "retrieveProjectServiceAccount",
        implied_operation_id="retrieveProjectServiceAccountOfCallerOrganization",
        responses={200: ServiceAccountOut},
    )
    def retrieve(
        self, request: Request, project_id: str, service_account_id: str, org_id: str | None = None
    ) -> Response:
        account = selectors.service_account_get(
            project_id=self.project.project.pk, public_id=service_account_id
        )
        return Response(ServiceAccountOut(account).data)

    @admin_op(
        "deleteProjectServiceAccount",
        implied_operation_id="deleteProjectServiceAccountOfCallerOrganization",
        responses={200: AdminObjectDeletedOut},
    )
    def destroy(
        self, request: Request, project_id: str, service_account_id: str, org_id: str | None = None
    ) -> Response:
        self.project.require_manage()
        account = selectors.service_account_get(
            project_id=self.project.project.pk, public_id=service_account_id
        )
        services.service_account_delete(account=account, actor=self.scope.actor)
        return _deleted("organization.project.service_account", service_account_id)


# --- Invites ---------------------------------------------------------------------------------------


class InviteViewSet(AdminViewSet):
    lookup_url_kwarg = "invite_id"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if hasattr(self, "scope"):
            self.scope.require_owner()  # invites carry e-mails and roles not yet accepted: owners' business

    @admin_op(
        "listInvites",
        implied_operation_id="listInvitesOfCallerOrganization",
        responses={200: InviteListOut},
        parameters=PAGE_PARAMETERS,
    )
    def list(self, request: Request, org_id: str | None = None) -> Response:
        return _page(request, selectors.invite_list(organization_id=self.scope.organization.pk), InviteOut)

    @admin_op(
        "createInvite",
        implied_operation_id="createInviteInCallerOrganization",
        request=InviteCreateIn,
        responses={201: InviteOut},
    )
    def create(self, request: Request, org_id: str | None = None) -> Response:
        data = parse(InviteCreateIn, request.data)
        invite = services.invite_create(organization=self.scope.organization, actor=self.scope.actor, **data)
        return Response(InviteOut(invite).data, status=201)

    @admin_op(
        "retrieveInvite",
        implied_operation_id="retrieveInviteOfCallerOrganization",
        responses={200: InviteOut},
    )
    def retrieve(self, request: Request, invite_id: str, org_id: str | None = None) -> Response:
        return Response(InviteOut(self._invite(invite_id)).data)

    @admin_op(
        "deleteInvite",
        implied_operation_id="deleteInviteOfCallerOrganization",
        responses={200: AdminObjectDeletedOut},
    )
    def destroy(self, request: Request, invite_id: str, org_id: str | None = None) -> Response:
        services.invite_delete(invite=self._invite(invite_id), actor=self.scope.actor)
        return _deleted("organization.invite", invite_id)

    @admin_op(
        "resendInvite",
        implied_operation_id="resendInviteOfCallerOrganization",
        request=None,
        responses={200: InviteOut},
    )
    @action(detail=True, methods=["post"])
    def resend(self, request: Request, invite_id: str, org_id: str | None = None) -> Response:
        invite = services.invite_resend(invite=self._invite(invite_id), actor=self.scope.actor)
        return Response(InviteOut(invite).data)

    def _invite(self, invite_id: str) -> Invite:
        return selectors.invite_get(organization_id=self.scope.organization.pk, public_id=invite_id)


class InviteVerificationViewSet(ViewSet):
    # No credential: the code from the e-mail is the proof.
    authentication_classes: list[Any] = []

    @admin_op(
        "verifyInvite",
        request=InviteVerificationIn,
        responses={200: InviteOut},
        auth=[],
        description="No credential: the code from the e-mail is the proof.",
    )
    def create(self, request: Request) -> Response:
        data = parse(InviteVerificationIn, request.data)
        return Response(InviteOut(services.invite_accept(code=data["code"])).data)


# --- Audit log -------------------------------------------------------------------------------------

_TIME_FILTERS = ("gt", "gte", "lt", "lte")
_LATEST_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z


def _list_param(request: Request, name: str) -> list[str]:
    values = request.query_params.getlist(name) + request.query_params.getlist(f"{name}[]")
    return [value for raw in values for value in raw.split(",") if value]


def _time_param(request: Request, op: str) -> int | None:
    name = f"effective_at[{op}]"
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise InvalidRequest(f"{name} must be a Unix timestamp in seconds.", param=name) from None
    # datetime cannot hold what lies past year 9999 (or before 1970 on some platforms).
    if not 0 <= value <= _LATEST_TIMESTAMP:
        raise InvalidRequest(
            f"{name} must be a Unix timestamp in seconds between 0 and {_LATEST_TIMESTAMP}.", param=name
        )
    return value


class AuditLogViewSet(AdminViewSet):
    @admin_op(
        "listAuditLogs",
        implied_operation_id="listAuditLogsOfCallerOrganization",
        responses={200: AuditLogListOut},
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("event_types[]", str, many=True, description="e.g. project.created"),
            OpenApiParameter("actor_ids[]", str, many=True, description="user or API key ids"),
            OpenApiParameter("resource_ids[]", str, many=True, description="ids of the changed objects"),
            OpenApiParameter("project_ids[]", str, many=True),
            *(OpenApiParameter(f"effective_at[{op}]", int) for op in _TIME_FILTERS),
        ],
        description="Organization owners only.",
    )
    def list(self, request: Request, org_id: str | None = None) -> Response:
        self.scope.require_owner()
        bounds = {op: _time_param(request, op) for op in _TIME_FILTERS}
        since = bounds["gte"] if bounds["gt"] is None else min(bounds["gt"] + 1, _LATEST_TIMESTAMP)
        before = bounds["lt"] if bounds["lte"] is None else min(bounds["lte"] + 1, _LATEST_TIMESTAMP)
        entries = selectors.audit_log_list(
            organization_id=self.scope.organization.pk,
            actions=_list_param(request, "event_types"),
            actor_ids=_list_param(request, "actor_ids"),
            resource_ids=_list_param(request, "resource_ids"),
            project_ids=_list_param(request, "project_ids"),
            since=datetime.fromtimestamp(since, tz=UTC) if since is not None else None,
            before=datetime.fromtimestamp(before, tz=UTC) if before is not None else None,
        )
        return _page(request, entries, AuditLogOut)
