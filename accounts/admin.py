from __future__ import annotations

from django.contrib import admin

from accounts.models import User


@admin.register(User)
class UserAdmin(admin.ModelAdmin[User]):
    list_display = ("email", "name", "public_id", "is_guest", "is_active", "is_staff", "created_at")
    list_filter = ("is_guest", "is_active", "is_staff")
    search_fields = ("email", "name", "public_id")
    readonly_fields = ("public_id", "created_at", "last_login")
    exclude = ("password",)
