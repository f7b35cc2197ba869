from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from conversations import streams, views
from gateway.routers import ApiRouter

router = ApiRouter()
router.register("v1/conversations", views.ConversationViewSet, basename="conversations")
router.register(
    "v1/conversations/<str:conversation_id>/items",
    views.ConversationItemViewSet,
    basename="conversation-items",
)

urlpatterns: list[URLPattern | URLResolver] = [
    *router.urls,
    # The conversation-aware chat routes stream: async Django views, not DRF.
    path("v1/conv/chat/completions", streams.conv_chat_completions, name="conv-chat-completions"),
    path("v1/conv/completions", streams.conv_completions, name="conv-completions"),
    path("v1/conv/models", streams.conv_models, name="conv-models"),
]
