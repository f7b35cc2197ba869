"""`/v1/organization…`. Organization ids only match `org_…`, so the org-implied forms
(`/v1/organization/projects…`) never collide with `/v1/organization/{org_id}…`."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path, register_converter

from organizations import budget_views, model_access_views, rate_limit_views, views


class OrganizationIdConverter:
    regex = "org_[0-9a-z]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(OrganizationIdConverter, "org")

_ORG = "v1/organization/<org:org_id>"
_IMPLIED = "v1/organization"

# Routes that exist both under an explicit organization and for the caller's organization.
_SCOPED: list[tuple[str, object, str]] = [
    ("/api_keys", views.OrganizationKeyCollection, "org-api-keys"),
    ("/api_keys/<str:key_id>", views.OrganizationKeyDetail, "org-api-key"),
    ("/projects", views.ProjectCollection, "projects"),
    ("/projects/<str:project_id>", views.ProjectDetail, "project"),
    ("/projects/<str:project_id>/archive", views.ProjectArchive, "project-archive"),
    ("/projects/<str:project_id>/api_keys", views.ProjectKeyCollection, "project-api-keys"),
    ("/projects/<str:project_id>/api_keys/<str:key_id>", views.ProjectKeyDetail, "project-api-key"),
    ("/projects/<str:project_id>/users", views.ProjectUserCollection, "project-users"),
    ("/projects/<str:project_id>/users/<str:user_id>", views.ProjectUserDetail, "project-user"),
    ("/projects/<str:project_id>/service_accounts", views.ServiceAccountCollection, "service-accounts"),
    (
        "/projects/<str:project_id>/service_accounts/<str:service_account_id>",
        views.ServiceAccountDetail,
        "service-account",
    ),
    ("/users", views.OrganizationUserCollection, "org-users"),
    ("/users/<str:user_id>", views.OrganizationUserDetail, "org-user"),
    ("/invites", views.InviteCollection, "invites"),
    ("/invites/<str:invite_id>", views.InviteDetail, "invite"),
    ("/invites/<str:invite_id>/resend", views.InviteResend, "invite-resend"),
    ("/audit_logs", views.AuditLogCollection, "audit-logs"),
    (
        "/api_keys/<str:key_id>/rate_limits",
        rate_limit_views.OrganizationKeyRateLimit,
        "org-api-key-rate-limits",
    ),
    (
        "/projects/<str:project_id>/rate_limits",
        rate_limit_views.ProjectRateLimitCollection,
        "project-rate-limits",
    ),
    (
        "/projects/<str:project_id>/rate_limits/<path:rate_limit_id>",
        rate_limit_views.ProjectRateLimitDetail,
        "project-rate-limit",
    ),
    (
        "/projects/<str:project_id>/api_keys/<str:key_id>/rate_limits",
        rate_limit_views.ProjectKeyRateLimit,
        "project-api-key-rate-limits",
    ),
    (
        "/projects/<str:project_id>/model_access",
        model_access_views.ProjectModelAccess,
        "project-model-access",
    ),
    (
        "/projects/<str:project_id>/api_keys/<str:key_id>/model_access",
        model_access_views.ProjectKeyModelAccess,
        "project-api-key-model-access",
    ),
    ("/projects/<str:project_id>/budget", budget_views.ProjectBudget, "project-budget"),
    (
        "/projects/<str:project_id>/api_keys/<str:key_id>/budget",
        budget_views.ProjectKeyBudget,
        "project-api-key-budget",
    ),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/organization", views.OrganizationCollection.as_view(), name="organizations"),
    path("v1/organization/admin_api_keys", views.AdminKeyCollection.as_view(), name="admin-api-keys"),
    path("v1/organization/admin_api_keys/<str:key_id>", views.AdminKeyDetail.as_view(), name="admin-api-key"),
    # before "/invites/<invite_id>": "verification" is not an invite id
    path(
        "v1/organization/invites/verification", views.InviteVerification.as_view(), name="invite-verification"
    ),
    path(_ORG, views.OrganizationDetail.as_view(), name="organization"),
]
for suffix, view, name in _SCOPED:
    urlpatterns.append(path(_ORG + suffix, view.as_view(), name=f"org-{name}"))  # type: ignore[attr-defined]
    # The org-implied form: jan-server's and OpenAI's admin SDK paths.
    urlpatterns.append(path(_IMPLIED + suffix, view.as_view(), name=name))  # type: ignore[attr-defined]
