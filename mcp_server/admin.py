from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from mcp_server.models import ToolCall


@admin.register(ToolCall)
class ToolCallAdmin(admin.ModelAdmin[ToolCall]):
    """The MCP usage record: read-only, written by the server."""

    list_display = (
        "created_at",
        "organization",
        "project",
        "tool",
        "is_error",
        "latency_ms",
        "api_key_id",
        "user_id",
    )
    list_filter = ("tool", "is_error")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ToolCall | None = None) -> bool:
        return False
