"""Django admin: stored responses, read-only (they are written by the generation code only;
an admin edit would desynchronise the row from its conversation and event log)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from responses.models import Response


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin[Response]):
    list_display = ("public_id", "status", "model", "project", "background", "created_at", "completed_at")
    list_select_related = ("project",)
    list_filter = ("status", "background")
    search_fields = ("public_id", "model", "conversation_public_id", "previous_response_public_id")
    # The principal snapshot holds ids only, but it is an implementation detail: not shown.
    exclude = ("principal",)
    readonly_fields = (
        "public_id",
        "organization",
        "project",
        "user",
        "previous_response",
        "previous_response_public_id",
        "conversation_public_id",
        "model",
        "status",
        "background",
        "stream",
        "instructions",
        "params",
        "input_items",
        "output",
        "usage",
        "error",
        "incomplete_details",
        "metadata",
        "request_id",
        "created_at",
        "started_at",
        "completed_at",
        "cancelled_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
