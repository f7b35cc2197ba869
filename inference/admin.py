from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from gateway.errors import InvalidRequest
from inference import crypto, endpoints, services
from inference.models import ModelPrice, Provider, ProviderModel, UsageRecord
from inference.reports import usage_summary_by_project


class ProviderAdminForm(forms.ModelForm[Provider]):
    """The provider's key is write-only here: stored encrypted, never shown again."""

    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="The model server's API key. Leave blank to keep the current one.",
    )
    clear_api_key = forms.BooleanField(required=False, help_text="Remove the stored key.")

    class Meta:
        model = Provider
        fields = ("name", "base_url", "active", "organization", "project", "is_default", "model_endpoints")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "model_endpoints" in cleaned:
            try:
                cleaned["model_endpoints"] = endpoints.validate_model_endpoints(
                    cleaned["model_endpoints"] or {}
                )
            except InvalidRequest as err:
                self.add_error("model_endpoints", err.message)
        base_url = cleaned.get("base_url")
        if base_url:
            organization = cleaned.get("organization")
            public_only = organization is not None and not settings.PROVIDER_PRIVATE_URLS_ALLOWED
            try:
                cleaned["base_url"] = services.validate_base_url(base_url, public_only=public_only)
            except InvalidRequest as err:
                self.add_error("base_url", err.message)
        return cleaned

    def save(self, commit: bool = True) -> Provider:
        provider = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            provider.api_key_encrypted = ""
        elif self.cleaned_data.get("api_key"):
            provider.api_key_encrypted = crypto.encrypt(self.cleaned_data["api_key"])
        if commit:
            provider.save()
        return provider


class ProviderModelInline(admin.TabularInline[ProviderModel, Provider]):
    model = ProviderModel
    extra = 0
    readonly_fields = ("model_id", "owned_by", "endpoints", "available", "first_seen_at", "last_seen_at")
    can_delete = False


class ModelPriceInline(admin.TabularInline[ModelPrice, Provider]):
    """Prices per million tokens; "*" prices the provider's other models. Usage rows keep the cost
    of their time, so a change here prices new calls only (from every worker's next reload)."""

    model = ModelPrice
    extra = 0
    fields = ("model_id", "input_per_million", "cached_input_per_million", "output_per_million", "currency")


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
        "last_good_poll_at",
        "last_error",
        "latency_ms",
        "created_at",
        "updated_at",
    )
    form = ProviderAdminForm
    inlines = [ProviderModelInline, ModelPriceInline]
    actions = ["check_now"]

    def save_model(self, request: HttpRequest, obj: Provider, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        transaction.on_commit(services.registry_bump)  # every worker routes with the change at once

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


class RecentPeriodFilter(admin.SimpleListFilter):
    """Rolling windows (the last 24 hours, 7 days, 30 days) for the per-project summary."""

    title = "period"
    parameter_name = "period"
    _HOURS = {"24h": 24, "7d": 24 * 7, "30d": 24 * 30}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("24h", "Last 24 hours"), ("7d", "Last 7 days"), ("30d", "Last 30 days")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
        hours = self._HOURS.get(self.value() or "")
        if hours is None:
            return queryset
        return queryset.filter(created_at__gte=timezone.now() - timedelta(hours=hours))


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin[UsageRecord]):
    list_display = (
        "created_at",
        "organization",
        "project",
        "model",
        "endpoint",
        "total_tokens",
        "cost",
        "currency",
        "latency_ms",
        "outcome",
    )
    list_filter = (RecentPeriodFilter, "outcome", "endpoint", "stream", "model", "project")
    date_hierarchy = "created_at"

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """The list, headed by a per-project summary of the rows its filters select."""
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context is not None and "cl" in context:
            context["project_summary"] = usage_summary_by_project(context["cl"].queryset)
        return response

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False
