from __future__ import annotations

from allauth.socialaccount.models import SocialAccount
from django.contrib import admin

from accounts.models import User


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
