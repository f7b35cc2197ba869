from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from inference import views, views_chat

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/chat/completions", views_chat.chat_completions, name="chat-completions"),
    path("v1/models", views_chat.models_list, name="models-list"),
    path("v1/models/<path:model>", views_chat.model_retrieve, name="models-retrieve"),
    path("v1/organization/models/providers", views.ProviderCollection.as_view(), name="providers"),
    path(
        "v1/organization/models/providers/<str:provider_id>", views.ProviderDetail.as_view(), name="provider"
    ),
]
