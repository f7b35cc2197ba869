from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from conversations import streams, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/conversations", views.ConversationCollection.as_view(), name="conversations"),
    path("v1/conversations/<str:conversation_id>", views.ConversationDetail.as_view(), name="conversation"),
    path(
        "v1/conversations/<str:conversation_id>/items",
        views.ItemCollection.as_view(),
        name="conversation-items",
    ),
    path(
        "v1/conversations/<str:conversation_id>/items/<str:item_id>",
        views.ItemDetail.as_view(),
        name="conversation-item",
    ),
    path("v1/conv/chat/completions", streams.conv_chat_completions, name="conv-chat-completions"),
    path("v1/conv/completions", streams.conv_completions, name="conv-completions"),
    path("v1/conv/models", streams.conv_models, name="conv-models"),
]
