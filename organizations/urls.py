"""`/v1/organization…`, on a router. Organization ids only match `org_…`, so the org-implied
forms (`/v1/organization/projects…`) never collide with `/v1/organization/{org_id}…`."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, register_converter

from gateway.routers import ApiRouter
from organizations import budget_views, model_access_views, rate_limit_views, views


class OrganizationIdConverter:
    regex = "org_[0-9a-z]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(OrganizationIdConverter, "org")

# Resources that exist both under an explicit organization and in the caller's organization
# (the org-implied form: jan-server's and OpenAI's admin SDK paths).
_SCOPED: list[tuple[str, type[views.AdminViewSet], str]] = [
    ("api_keys", views.OrganizationApiKeyViewSet, "org-api-keys"),
    ("projects", views.ProjectViewSet, "projects"),
    ("projects/<str:project_id>/api_keys", views.ProjectApiKeyViewSet, "project-api-keys"),
    ("projects/<str:project_id>/users", views.ProjectUserViewSet, "project-users"),
    ("projects/<str:project_id>/service_accounts", views.ServiceAccountViewSet, "service-accounts"),
    (
        "projects/<str:project_id>/rate_limits",
        rate_limit_views.ProjectRateLimitViewSet,
        "project-rate-limits",
    ),
    ("users", views.OrganizationUserViewSet, "org-users"),
    ("invites", views.InviteViewSet, "invites"),
    ("audit_logs", views.AuditLogViewSet, "audit-logs"),
    ("projects/<str:project_id>/model_access", model_access_views.ProjectModelAccess, "project-model-access"),
    (
        "projects/<str:project_id>/api_keys/<str:key_id>/model_access",
        model_access_views.ProjectKeyModelAccess,
        "project-api-key-model-access",
    ),
    ("projects/<str:project_id>/budget", budget_views.ProjectBudget, "project-budget"),
    (
        "projects/<str:project_id>/api_keys/<str:key_id>/budget",
        budget_views.ProjectKeyBudget,
        "project-api-key-budget",
    ),
]

router = ApiRouter()
router.register("v1/organization", views.OrganizationViewSet, basename="organizations")
router.register("v1/organization/admin_api_keys", views.AdminApiKeyViewSet, basename="admin-api-keys")
# before the invites: "verification" is not an invite id
router.register(
    "v1/organization/invites/verification", views.InviteVerificationViewSet, basename="invite-verification"
)
for prefix, viewset, name in _SCOPED:
    router.register(f"v1/organization/<org:org_id>/{prefix}", viewset, basename=f"org-{name}")
    router.register(f"v1/organization/{prefix}", viewset, basename=name)

urlpatterns: list[URLPattern | URLResolver] = [*router.urls]
