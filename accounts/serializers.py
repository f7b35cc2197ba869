"""Input and output shapes of the authentication routes (names are unique project-wide)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import User


class AuthGoogleCallbackIn(serializers.Serializer[Any]):
    code = serializers.CharField(max_length=2048, trim_whitespace=False)
    # Optional here so that a missing state gets the same answer as a wrong one.
    state = serializers.CharField(max_length=512, required=False, allow_blank=True, default="")


class AuthAccessTokenOut(serializers.Serializer[Any]):
    object = serializers.CharField(default="access.token")
    access_token = serializers.CharField()
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")


class AuthGoogleLoginUrlOut(serializers.Serializer[Any]):
    object = serializers.CharField(default="google.login.url")
    url = serializers.URLField()


class AuthLogoutOut(serializers.Serializer[Any]):
    object = serializers.CharField(default="logout")
    status = serializers.CharField(default="ok")


class AuthMeOut(serializers.Serializer[User]):
    object = serializers.SerializerMethodField()
    id = serializers.CharField(source="public_id")
    email = serializers.EmailField()
    name = serializers.CharField()
    is_guest = serializers.BooleanField()
    created_at = serializers.SerializerMethodField()

    def get_object(self, user: User) -> str:
        return "me"

    def get_created_at(self, user: User) -> int:
        return int(user.created_at.timestamp())
