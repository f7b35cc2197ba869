from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone

from gateway.ids import public_id


class UserManager(BaseUserManager["User"]):
    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)  # None -> unusable password
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    public_id = models.CharField(
        max_length=40, unique=True, default=partial(public_id, "user"), editable=False
    )
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200, blank=True)
    is_guest = models.BooleanField(default=False)
    # `enabled` in jan-server; Django's is_active drives admin login and our authentication alike.
    is_active = models.BooleanField("enabled", default=True)
    is_staff = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    def __str__(self) -> str:
        return self.email


class RevokedTokenFamily(models.Model):
    """A refresh-token family that may no longer be used.

    Every refresh token carries the `fam` claim: the id of the first token of its sign-in, which
    rotation hands down. When a token that was already used comes back, someone holds a copy, so
    the whole family (the rotated successors too) is refused from then on.
    """

    family = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.CASCADE)
    revoked_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"token family {self.family}"
