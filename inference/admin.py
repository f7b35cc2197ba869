from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from inference import services
from inference.models import Provider, ProviderModel, UsageRecord


class ProviderModelInline(admin.TabularInline[ProviderModel, Provider]):
    model = ProviderModel
    extra = 0
    readonly_fields = ("model_id", "owned_by", "available", "first_seen_at", "last_seen_at")
    can_delete = False


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin[Provider]):
    list_display = (
        "name",
        "base_url",
        "active",
        "healthy",
        "consecutive_failures",
        "latency_ms",
        "last_check_at",
        "organization",
        "project",
    )
    list_filter = ("active", "healthy", "is_default")
    search_fields = ("name", "base_url", "public_id")
    readonly_fields = (
        "public_id",
        "healthy",
        "consecutive_failures",
        "last_check_at",
        "last_error",
        "latency_ms",
        "created_at",
        "updated_at",
    )
    exclude = ("api_key_encrypted",)
    inlines = [ProviderModelInline]
    actions = ["check_now"]

    @admin.action(description="Check now (poll /v1/models)")
    def check_now(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        for provider in queryset:
            checked = services.provider_check(provider_id=provider.pk, force=True)
            state = (
                "healthy"
                if checked and checked.healthy
                else f"unhealthy: {checked.last_error if checked else '?'}"
            )
            self.message_user(request, f"{provider.name}: {state}", messages.INFO)


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin[UsageRecord]):
    list_display = ("created_at", "organization", "project", "model", "total_tokens", "latency_ms", "outcome")
    list_filter = ("outcome", "stream", "model")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False
