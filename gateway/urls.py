from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

from gateway import health, index, metrics
from gateway.api import SchemaView

handler400 = "gateway.errors.handler400"
handler403 = "gateway.errors.handler403"
handler404 = "gateway.errors.handler404"
handler500 = "gateway.errors.handler500"

urlpatterns = [
    path("", index.index, name="index"),
    path("healthcheck", health.healthcheck, name="healthcheck"),
    path("readyz", health.readyz, name="readyz"),
    path("v1/version", health.version, name="version"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/schema", SchemaView.as_view(), name="schema"),
    path("api/swagger", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/swagger/index.html", SpectacularSwaggerView.as_view(url_name="schema")),
    path(
        "api/docs",
        SpectacularRedocView.as_view(url_name="schema", template_name="gateway/redoc.html"),
        name="redoc",
    ),
    # People type the documentation pages with a trailing slash (the API paths have none).
    path("api/schema/", SchemaView.as_view()),
    path("api/swagger/", SpectacularSwaggerView.as_view(url_name="schema")),
    path("api/docs/", SpectacularRedocView.as_view(url_name="schema", template_name="gateway/redoc.html")),
    path("admin", RedirectView.as_view(url="/admin/")),
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    # inference first: its /v1/organization/models/... must win over /v1/organization/<org_id>/...
    path("", include("inference.urls")),
    path("", include("organizations.urls")),
    path("", include("conversations.urls")),
    path("", include("responses.urls")),
    path("", include("mcp_server.urls")),
]
