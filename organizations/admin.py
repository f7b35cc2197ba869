from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from gateway.errors import InvalidRequest
from organizations import budgets, services
from organizations.model_access import allow_list_check
from organizations.models import (
    ApiKey,
    AuditLogEntry,
    Invite,
    Organization,
    OrganizationMember,
    Project,
    ProjectMember,
    ProjectRateLimit,
    ServiceAccount,
)
from organizations.services.budgets import BUDGET_FIELDS, api_key_budget_set, project_budget_set
from organizations.services.model_access import api_key_model_access_set, project_model_access_set
from organizations.services.rate_limits import LIMIT_FIELDS


def _admin_actor(request: HttpRequest) -> services.Actor:
    return services.Actor(type="user", id=getattr(request.user, "public_id", ""))


def _resync_keys(memberships: Iterable[tuple[int | None, int | None]]) -> None:
    """Edits here bypass the services, so apply their rule afterwards: a user's keys follow
    their current role and memberships (organization id, user id pairs)."""
    for organization_id, user_id in set(memberships):
        if organization_id is not None and user_id is not None:
            services.organization_member_keys_resync(organization_id=organization_id, user_id=user_id)


def _formset_memberships(formset: BaseInlineFormSet[Any, Any, Any]) -> list[tuple[int | None, int | None]]:
    """(organization, user) of every row in a member formset, before and after the edit."""
    pairs: list[tuple[int | None, int | None]] = []
    for form in formset.forms:
        instance = form.instance
        organization_id = (
            instance.organization_id
            if hasattr(instance, "organization_id")
            else instance.project.organization_id
        )
        pairs.append((organization_id, instance.user_id))
        initial_user = form.initial.get("user")
        if initial_user is not None:
            pairs.append((organization_id, getattr(initial_user, "pk", initial_user)))
    return pairs


class _MemberAdminMixin:
    """Role and membership edits in Django admin re-check the member's keys, as the
    administration API does (a demoted owner's admin keys are revoked)."""

    @staticmethod
    def _membership(obj: Any) -> tuple[int | None, int | None]:
        if isinstance(obj, ProjectMember):
            return obj.project.organization_id, obj.user_id
        return obj.organization_id, obj.user_id

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        before = type(obj).objects.filter(pk=obj.pk).first() if obj.pk else None
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        _resync_keys([self._membership(obj), *([self._membership(before)] if before else [])])

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        membership = self._membership(obj)
        super().delete_model(request, obj)  # type: ignore[misc]
        _resync_keys([membership])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            memberships = [self._membership(obj) for obj in queryset]
            super().delete_queryset(request, queryset)  # type: ignore[misc]
            _resync_keys(memberships)


def _save_member_formset(
    admin_: admin.ModelAdmin[Any],
    request: HttpRequest,
    form: ModelForm[Any],
    formset: BaseInlineFormSet[Any, Any, Any],
    change: bool,
) -> bool:
    """Save a member inline and re-check its users' keys; False if `formset` is not one."""
    if formset.model not in (OrganizationMember, ProjectMember):
        return False
    before = _formset_memberships(formset)
    admin.ModelAdmin.save_formset(admin_, request, form, formset, change)
    _resync_keys([*before, *_formset_memberships(formset)])
    return True


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

    def save_formset(
        self,
        request: HttpRequest,
        form: ModelForm[Any],
        formset: BaseInlineFormSet[Any, Any, Any],
        change: bool,
    ) -> None:
        if not _save_member_formset(self, request, form, formset, change):
            super().save_formset(request, form, formset, change)


class ProjectMemberInline(admin.TabularInline[ProjectMember, Project]):
    model = ProjectMember
    extra = 0
    autocomplete_fields = ("user",)


class ProjectRateLimitInline(admin.TabularInline[ProjectRateLimit, Project]):
    """A project's limits per model ("*": all models together); 0 is no limit. Saved through the
    services (ProjectAdmin.save_formset), so the change is audited and reaches every worker."""

    model = ProjectRateLimit
    extra = 0
    fields = ("model", *LIMIT_FIELDS)


def _budget_text(row: Project | ApiKey, scope: str) -> str:
    if row.pk is None:
        return "-"
    spent = budgets.spent_nanos(row.organization.public_id, scope)
    shown = (
        "unknown (counter store unreachable)" if spent is None else f"{Decimal(spent) / budgets.NANOS:.4f}"
    )
    hard = row.monthly_budget if row.monthly_budget is not None else "none"
    soft = row.monthly_soft_budget if row.monthly_soft_budget is not None else "none"
    return f"{budgets.month_now()}: spent {shown} {budgets.currency().upper()} (hard limit {hard}, soft limit {soft})"


def _clean_allowed_models(form: ModelForm[Any]) -> list[str]:
    try:
        return allow_list_check(form.cleaned_data.get("allowed_models") or [])
    except InvalidRequest as err:
        raise ValidationError(err.message) from None


class ProjectAdminForm(ModelForm[Project]):
    class Meta:
        model = Project
        fields = ("allowed_models",)  # the admin adds the rest of its fields

    def clean_allowed_models(self) -> list[str]:
        return _clean_allowed_models(self)


class ApiKeyChangeForm(ModelForm[ApiKey]):
    class Meta:
        model = ApiKey
        fields = ("allowed_models",)  # the admin adds the rest of its fields

    def clean_allowed_models(self) -> list[str]:
        return _clean_allowed_models(self)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin[Project]):
    form = ProjectAdminForm
    list_display = ("name", "public_id", "organization", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("name", "public_id", "organization__name")
    fields = (
        "public_id",
        "organization",
        "name",
        "status",
        "archived_at",
        "created_at",
        "deleted_at",
        "allowed_models",
        *BUDGET_FIELDS,
        "budget_state",
    )
    readonly_fields = ("public_id", "created_at", "budget_state")
    inlines = [ProjectMemberInline, ProjectRateLimitInline]

    def save_model(self, request: HttpRequest, obj: Project, form: ModelForm[Project], change: bool) -> None:
        allowed = obj.allowed_models
        super().save_model(request, obj, form, change)
        # Through the services: checked, audited, and every key of the project dropped from the cache.
        if change and "allowed_models" in form.changed_data:
            project_model_access_set(project=obj, allowed_models=allowed, actor=_admin_actor(request))
        budget_changes = {name: getattr(obj, name) for name in BUDGET_FIELDS if name in form.changed_data}
        if change and budget_changes:
            project_budget_set(project=obj, actor=_admin_actor(request), **budget_changes)

    @admin.display(description="Budget this month")
    def budget_state(self, obj: Project) -> str:
        return _budget_text(obj, f"p{obj.pk}")

    def save_formset(
        self,
        request: HttpRequest,
        form: ModelForm[Any],
        formset: BaseInlineFormSet[Any, Any, Any],
        change: bool,
    ) -> None:
        if _save_member_formset(self, request, form, formset, change):
            return
        if formset.model is not ProjectRateLimit:
            super().save_formset(request, form, formset, change)
            return
        actor, project = _admin_actor(request), form.instance
        formset.save(commit=False)
        for row in formset.deleted_objects:
            services.project_rate_limit_delete(rate_limit=row, actor=actor)
        for row, changed in formset.changed_objects:
            if "model" in changed:  # renamed: the old model loses its limits
                services.project_rate_limit_delete(
                    rate_limit=ProjectRateLimit.objects.get(pk=row.pk), actor=actor
                )
        for row in [*formset.new_objects, *(row for row, _ in formset.changed_objects)]:
            limits = {name: getattr(row, name) for name in LIMIT_FIELDS}
            services.project_rate_limit_set(project=project, model=row.model, actor=actor, **limits)


@admin.register(ServiceAccount)
class ServiceAccountAdmin(admin.ModelAdmin[ServiceAccount]):
    list_display = ("name", "public_id", "project", "created_at", "deleted_at")
    search_fields = ("name", "public_id", "project__name", "project__public_id")
    list_filter = ("role",)
    readonly_fields = ("public_id", "created_at")


class ApiKeyAddForm(forms.ModelForm[ApiKey]):
    """The checks the API makes before creating a key, as form errors instead of database errors.
    Keys made here are audited with the staff user as the actor."""

    expires_in = forms.IntegerField(
        required=False, min_value=1, help_text="Seconds from now (an ephemeral key needs at most 3600)."
    )

    class Meta:
        model = ApiKey
        fields = (
            "name",
            "description",
            "key_type",
            "organization",
            "project",
            "owner_user",
            "service_account",
        )

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        key_type = data.get("key_type")
        organization, project = data.get("organization"), data.get("project")
        owner, service_account = data.get("owner_user"), data.get("service_account")
        project_scoped = key_type in (ApiKey.Type.PROJECT, ApiKey.Type.SERVICE, ApiKey.Type.EPHEMERAL)
        if project_scoped and project is None:
            self.add_error("project", f"A {key_type} key belongs to one project.")
        if not project_scoped and project is not None:
            self.add_error("project", f"A {key_type} key belongs to the organization, not a project.")
        if project is not None and project.status != Project.Status.ACTIVE:
            self.add_error("project", "An archived project cannot get new keys.")
        if project is not None and organization is not None and project.organization_id != organization.pk:
            self.add_error("project", "The project is not in this organization.")
        if key_type == ApiKey.Type.SERVICE:
            if service_account is None:
                self.add_error("service_account", "A service key belongs to a service account.")
            elif project is not None and service_account.project_id != project.pk:
                self.add_error("service_account", "The service account is not in this project.")
            if owner is not None:
                self.add_error("owner_user", "A service key has no owning user.")
        else:
            if owner is None:
                self.add_error("owner_user", "The key acts as this user: choose one.")
            if service_account is not None:
                self.add_error("service_account", "Only service keys belong to a service account.")
        if key_type:
            try:
                data["expires_at"] = services.api_key_expiry(
                    key_type=key_type, expires_in=data.get("expires_in"), expires_at=None
                )
            except InvalidRequest as error:
                raise ValidationError({"expires_in": error.message}) from error
        return data


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
        *LIMIT_FIELDS,
        "allowed_models",
        *BUDGET_FIELDS,
        "budget_state",
    )
    # Only limits, the model allow-list and budgets change here.
    readonly_fields = tuple(
        name for name in fields if name not in (*LIMIT_FIELDS, "allowed_models", *BUDGET_FIELDS)
    )
    form = ApiKeyChangeForm
    actions = ["revoke", "disable", "enable"]

    add_fields = (*ApiKeyAddForm.Meta.fields, "expires_in")

    def get_form(
        self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
            kwargs["fields"] = self.add_fields
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return self.add_fields if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return () if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ApiKey, form: ModelForm[ApiKey], change: bool) -> None:
        """Creation and limits go through the services: hashed, audited, caches dropped."""
        if not change:
            data = form.cleaned_data
            key, raw_key = services.api_key_create(
                organization=data["organization"],
                key_type=data["key_type"],
                name=data.get("name") or "",
                description=data.get("description") or "",
                project=data.get("project"),
                owner_user_id=data["owner_user"].pk if data.get("owner_user") else None,
                service_account=data.get("service_account"),
                expires_at=data.get("expires_at"),
                actor=_admin_actor(request),
            )
            # The admin goes on with `obj` (log entry, redirect): make it the created row.
            obj.__dict__.update({k: v for k, v in key.__dict__.items() if not k.startswith("_")})
            obj._state.adding = False
            # Shown once by response_add, from memory: never stored (no message, no session).
            request._created_api_key_value = raw_key  # type: ignore[attr-defined]
            return
        limits = {name: form.cleaned_data[name] for name in LIMIT_FIELDS if name in form.cleaned_data}
        actor = _admin_actor(request)
        services.api_key_limits_set(key=ApiKey.objects.get(pk=obj.pk), actor=actor, **limits)
        budget_changes = {
            name: form.cleaned_data[name] for name in BUDGET_FIELDS if name in form.changed_data
        }
        if budget_changes:
            api_key_budget_set(key=ApiKey.objects.get(pk=obj.pk), actor=actor, **budget_changes)
        if "allowed_models" in form.changed_data:
            api_key_model_access_set(
                key=ApiKey.objects.get(pk=obj.pk),
                allowed_models=form.cleaned_data["allowed_models"],
                actor=actor,
            )

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        raw_key = getattr(request, "_created_api_key_value", None)
        if raw_key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created",
            "opts": self.opts,
            "key": obj,
            "raw_key": raw_key,
            "change_url": reverse("admin:organizations_apikey_change", args=[obj.pk]),
        }
        response = TemplateResponse(request, "admin/organizations/apikey/created.html", context)
        response["Cache-Control"] = "no-store"  # the one page that shows the value: keep it out of caches
        return response

    @admin.display(description="Budget this month")
    def budget_state(self, obj: ApiKey) -> str:
        return _budget_text(obj, f"k{obj.pk}")

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


@admin.register(OrganizationMember)
class OrganizationMemberAdmin(_MemberAdminMixin, admin.ModelAdmin[OrganizationMember]):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "user__public_id", "organization__name", "organization__public_id")
    autocomplete_fields = ("user",)
    list_select_related = ("user", "organization")


@admin.register(ProjectMember)
class ProjectMemberAdmin(_MemberAdminMixin, admin.ModelAdmin[ProjectMember]):
    list_display = ("user", "project", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "user__public_id", "project__name", "project__public_id")
    autocomplete_fields = ("user",)
    list_select_related = ("user", "project")


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin[Invite]):
    """Never the code's hash. "Resend" goes through the service: a new code, a new e-mail."""

    list_display = ("email", "public_id", "organization", "role", "status", "delivery_status", "expires_at")
    list_filter = ("status", "delivery_status", "role")
    search_fields = ("email", "public_id", "organization__name")
    fields = (
        "public_id",
        "organization",
        "email",
        "role",
        "projects",
        "status",
        "delivery_status",
        "delivery_attempts",
        "delivery_error",
        "sent_at",
        "invited_by",
        "invited_at",
        "expires_at",
        "accepted_at",
        "deleted_at",
    )
    readonly_fields = fields
    actions = ["resend"]
    list_select_related = ("organization",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # invites are created through the API, which validates projects and e-mail

    @admin.action(description="Resend selected invites")
    def resend(self, request: HttpRequest, queryset: QuerySet[Invite]) -> None:
        actor = services.Actor(type="user", id=getattr(request.user, "public_id", ""))
        for invite in queryset.filter(deleted_at__isnull=True).exclude(status=Invite.Status.ACCEPTED):
            services.invite_resend(invite=invite, actor=actor)
        self.message_user(request, "Queued for sending.", messages.SUCCESS)


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(admin.ModelAdmin[AuditLogEntry]):
    """Read-only: the audit log is evidence."""

    list_display = (
        "created_at",
        "action",
        "actor_type",
        "actor_id",
        "target_id",
        "organization",
        "request_id",
    )
    list_filter = ("action", "actor_type", "target_type")
    search_fields = (
        "public_id",
        "actor_id",
        "actor_user_id",
        "target_id",
        "request_id",
        "organization__name",
    )
    list_select_related = ("organization",)
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditLogEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditLogEntry | None = None) -> bool:
        return False
