from __future__ import annotations

from typing import Any

from allauth.socialaccount.models import SocialAccount
from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import User
from organizations.services import api_keys_invalidate_for_user


class SocialAccountInline(admin.TabularInline):  # type: ignore[type-arg]  # allauth is untyped
    """Linked Google accounts (allauth SocialAccount rows written by Google sign-in)."""

    model = SocialAccount
    fields = ("provider", "uid", "date_joined", "last_login")
    readonly_fields = fields
    extra = 0
    # Unlinking is allowed (the user keeps their row; the next Google sign-in matches by e-mail).
    can_delete = True

    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False  # links come from signing in, not from typing a Google subject in


@admin.register(User)
class UserAdmin(admin.ModelAdmin[User]):
    list_display = ("email", "name", "public_id", "is_guest", "is_active", "is_staff", "created_at")
    list_filter = ("is_guest", "is_active", "is_staff")
    search_fields = ("email", "name", "public_id")
    readonly_fields = ("public_id", "created_at", "last_login")
    exclude = ("password",)
    inlines = (SocialAccountInline,)

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        was_active = User.objects.filter(pk=obj.pk).values_list("is_active", flat=True).first()
        super().save_model(request, obj, form, change)
        if change and was_active != obj.is_active:
            # The key cache copied "owner enabled" when it last read each key: a disabled
            # user's keys must stop working at once on every worker, not when entries expire.
            api_keys_invalidate_for_user(user_id=obj.pk)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        with transaction.atomic():
            api_keys_invalidate_for_user(user_id=obj.pk)  # hashes read now; dropped after the commit
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        with transaction.atomic():
            for user_id in queryset.values_list("pk", flat=True):
                api_keys_invalidate_for_user(user_id=user_id)
            super().delete_queryset(request, queryset)
