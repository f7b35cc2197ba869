from __future__ import annotations

from django.urls import URLPattern, URLResolver, path, re_path

from inference import cost_views, report_views, views, views_chat

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/chat/completions", views_chat.chat_completions, name="chat-completions"),
    path("v1/completions", views_chat.completions, name="completions"),
    path("v1/embeddings", views_chat.embeddings, name="embeddings"),
    path("v1/models", views_chat.models_list, name="models-list"),
    path("v1/models/<path:model>", views_chat.model_retrieve, name="models-retrieve"),
    path("v1/organization/models/providers", views.ProviderCollection.as_view(), name="providers"),
    path(
        "v1/organization/models/providers/<str:provider_id>", views.ProviderDetail.as_view(), name="provider"
    ),
    path("v1/organization/costs", cost_views.OrganizationCosts.as_view(), name="organization-costs"),
    re_path(
        r"^v1/organization/(?P<org_id>org_[0-9a-z]+)/costs$",
        cost_views.OrganizationCosts.as_view(),
        name="org-costs",
    ),
    # Usage reports (inference.report_views); a regex for org ids, like organizations.urls' converter.
    path(
        "v1/organization/usage/completions", report_views.UsageCompletions.as_view(), name="usage-completions"
    ),
    re_path(
        r"^v1/organization/(?P<org_id>org_[0-9a-z]+)/usage/completions$",
        report_views.UsageCompletions.as_view(),
        name="org-usage-completions",
    ),
    re_path(
        r"^v1/organization/(?P<org_id>org_[0-9a-z]+)/usage$",
        report_views.UsageCompletions.as_view(),
        name="org-usage",
    ),
]
