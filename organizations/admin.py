from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from organizations import services
from organizations.models import (
    ApiKey,
    Organization,
    OrganizationMember,
    Project,
    ProjectMember,
    ServiceAccount,
)


class OrganizationMemberInline(admin.TabularInline[OrganizationMember, Organization]):
    model = OrganizationMember
    extra = 0
    autocomplete_fields = ("user",)


class ProjectInline(admin.TabularInline[Project, Organization]):
    model = Project
    extra = 0
    fields = ("public_id", "name", "status", "archived_at", "created_at")
    readonly_fields = ("public_id", "created_at")
    show_change_link = True


class ApiKeyInline(admin.TabularInline[ApiKey, Organization]):
    """Keys are read-only here: created through the API or createadminkey (the value is shown once)."""

    model = ApiKey
    extra = 0
    fields = (
        "public_id",
        "name",
        "key_type",
        "redacted_value",
        "project",
        "enabled",
        "expires_at",
        "last_used_at",
    )
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Organization | None = None) -> bool:
        return False


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin[Organization]):
    list_display = ("name", "public_id", "is_default", "created_at", "deleted_at")
    list_filter = ("is_default",)
    search_fields = ("name", "public_id")
    readonly_fields = ("public_id", "created_at")
    inlines = [ProjectInline, OrganizationMemberInline, ApiKeyInline]


class ProjectMemberInline(admin.TabularInline[ProjectMember, Project]):
    model = ProjectMember
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin[Project]):
    list_display = ("name", "public_id", "organization", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("name", "public_id", "organization__name")
    readonly_fields = ("public_id", "created_at")
    inlines = [ProjectMemberInline]


@admin.register(ServiceAccount)
class ServiceAccountAdmin(admin.ModelAdmin[ServiceAccount]):
    list_display = ("name", "public_id", "project", "created_at", "deleted_at")
    search_fields = ("name", "public_id")
    readonly_fields = ("public_id", "created_at")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    """Never the hash. Revoke and disable go through the services so every worker's cache drops the key."""

    list_display = (
        "name",
        "public_id",
        "key_type",
        "redacted_value",
        "organization",
        "project",
        "enabled",
        "expires_at",
        "last_used_at",
        "deleted_at",
    )
    list_filter = ("key_type", "enabled")
    search_fields = ("name", "public_id", "redacted_value", "organization__name", "project__name")
    fields = (
        "public_id",
        "name",
        "description",
        "key_type",
        "redacted_value",
        "organization",
        "project",
        "owner_user",
        "service_account",
        "enabled",
        "expires_at",
        "last_used_at",
        "created_at",
        "deleted_at",
    )
    readonly_fields = fields
    actions = ["revoke", "disable", "enable"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a key's value can only be shown once, by the API or createadminkey

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # use "revoke": a soft delete that also clears the caches

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset.filter(deleted_at__isnull=True):
            services.api_key_delete(key=key)
        self.message_user(request, "Revoked.", messages.SUCCESS)

    @admin.action(description="Disable selected keys")
    def disable(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            services.api_key_set_enabled(key=key, enabled=False)
        self.message_user(request, "Disabled.", messages.SUCCESS)

    @admin.action(description="Enable selected keys")
    def enable(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset.filter(deleted_at__isnull=True):
            services.api_key_set_enabled(key=key, enabled=True)
        self.message_user(request, "Enabled.", messages.SUCCESS)
