"""Django admin: conversations and their items, read-only (they are written through the API,
whose services validate items and announce them; an admin edit would bypass both)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from conversations.models import Conversation, Item


class ItemInline(admin.TabularInline[Item, Conversation]):
    model = Item
    extra = 0
    fields = (
        "public_id",
        "type",
        "role",
        "status",
        "content",
        "data",
        "response_id",
        "created_at",
        "deleted_at",
    )
    readonly_fields = fields
    can_delete = False
    ordering = ("pk",)

    def has_add_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin[Conversation]):
    list_display = (
        "public_id",
        "title",
        "project",
        "creator_user",
        "creator_service_account",
        "created_at",
        "deleted_at",
    )
    list_select_related = ("project", "creator_user", "creator_service_account")
    search_fields = ("public_id", "title")
    list_filter = ("deleted_at",)
    readonly_fields = (
        "public_id",
        "organization",
        "project",
        "creator_user",
        "creator_service_account",
        "title",
        "metadata",
        "created_at",
        "updated_at",
        "deleted_at",
    )
    inlines = [ItemInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False
