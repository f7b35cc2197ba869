from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from responses import streams

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/responses", streams.response_create, name="responses-create"),
    path("v1/responses/<str:response_id>", streams.response_detail, name="responses-detail"),
    path("v1/responses/<str:response_id>/cancel", streams.response_cancel, name="responses-cancel"),
    path(
        "v1/responses/<str:response_id>/input_items",
        streams.response_input_items,
        name="responses-input-items",
    ),
]
