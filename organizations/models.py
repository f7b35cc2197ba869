from __future__ import annotations

from functools import partial

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from gateway.ids import public_id


class Organization(models.Model):
    public_id = models.CharField(
        max_length=40, unique=True, default=partial(public_id, "org", 16), editable=False
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # The organization every new user lands in (DESIGN §4); exactly one may have it.
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_organization"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class OrganizationMember(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        READER = "reader"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="organization_memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.READER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="one_membership_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.organization_id} as {self.role}"


class Project(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        ARCHIVED = "archived"

    public_id = models.CharField(
        max_length=40, unique=True, default=partial(public_id, "proj", 16), editable=False
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class ProjectMember(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        MEMBER = "member"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="project_memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_project")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.project_id} as {self.role}"


class ServiceAccount(models.Model):
    public_id = models.CharField(
        max_length=40, unique=True, default=partial(public_id, "svc", 16), editable=False
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="service_accounts")
    name = models.CharField(max_length=200)
    role = models.CharField(max_length=16, default="member")
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class ApiKey(models.Model):
    """An API key. Only HMAC-SHA256(APIKEY_SECRET, key) is stored; the key itself is shown once."""

    class Type(models.TextChoices):
        ADMIN = "admin"
        ORGANIZATION = "organization"
        PROJECT = "project"
        SERVICE = "service"
        EPHEMERAL = "ephemeral"

    public_id = models.CharField(
        max_length=40, unique=True, default=partial(public_id, "key", 16), editable=False
    )
    key_type = models.CharField(max_length=16, choices=Type.choices)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    redacted_value = models.CharField(max_length=32, editable=False)
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    owner_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    service_account = models.ForeignKey(
        ServiceAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    enabled = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(key_type__in=["admin", "organization"], project__isnull=True)
                | Q(key_type__in=["project", "service", "ephemeral"], project__isnull=False),
                name="api_key_project_matches_type",
            ),
            models.CheckConstraint(
                condition=Q(key_type="service", service_account__isnull=False, owner_user__isnull=True)
                | (~Q(key_type="service") & Q(service_account__isnull=True)),
                name="api_key_owner_matches_type",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.public_id} ({self.key_type}, {self.redacted_value})"
