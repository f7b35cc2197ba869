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
    # The organization every new user's Default Project is created in; exactly one may have it.
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
    # Model ids or glob patterns the project's callers may use; empty: every model.
    allowed_models = models.JSONField(default=list, blank=True)
    # Monthly spend limits in BUDGET_CURRENCY (null: none). Hard refuses calls once the month's
    # cost reaches it; soft sends the organization owners one e-mail a month.
    monthly_budget = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    monthly_soft_budget = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)

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
    # This key's own limits, over every model and on top of its project's (0: no limit).
    max_requests_per_1_minute = models.PositiveIntegerField(default=0)
    max_tokens_per_1_minute = models.PositiveIntegerField(default=0)
    max_concurrent_streams = models.PositiveIntegerField(default=0)
    # Model ids or glob patterns this key may use, within its project's list; empty: no own list.
    allowed_models = models.JSONField(default=list, blank=True)
    # The key's own monthly spend limits, on top of its project's (see Project).
    monthly_budget = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    monthly_soft_budget = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
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


class ProjectRateLimit(models.Model):
    """A project's limits for one model, or for all its models together (`model="*"`), in the shape
    of OpenAI's `project.rate_limit`. 0 means no limit. Enforced by organizations.ratelimits."""

    ALL_MODELS = "*"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rate_limits")
    model = models.CharField(max_length=300, help_text='A model id, or "*" for all models together.')
    max_requests_per_1_minute = models.PositiveIntegerField(default=0)
    max_tokens_per_1_minute = models.PositiveIntegerField(default=0)
    max_concurrent_streams = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "model"], name="one_rate_limit_per_model")]

    def __str__(self) -> str:
        return f"{self.model} in {self.project_id}"

    @property
    def public_id(self) -> str:
        """OpenAI names a project's rate limit after its model (`rl_ada`); so do we."""
        return f"rl_{self.model}"


class Invite(models.Model):
    """An invitation to join an organization (and some of its projects) by e-mail.

    The secret that accepts it is generated when the e-mail is sent and stored only as a hash, so
    it exists nowhere but in the message. `status` is the invite's life; `delivery_status` is the
    e-mail's, kept separately so a failed delivery leaves the invite in place to resend.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        EXPIRED = "expired"

    class Delivery(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    public_id = models.CharField(
        max_length=40, unique=True, default=partial(public_id, "invite", 16), editable=False
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invites")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=OrganizationMember.Role.choices)
    # [{"id": "proj_…", "role": "owner" | "member"}], checked against the organization at creation.
    projects = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    delivery_status = models.CharField(max_length=16, choices=Delivery.choices, default=Delivery.PENDING)
    delivery_attempts = models.PositiveIntegerField(default=0)
    delivery_error = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    secret_hash = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    invited_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.email} to {self.organization_id} ({self.status})"


class AuditLogEntry(models.Model):
    """One change made through the administration API. Ids are public strings, not foreign keys,
    so the record outlives what it describes. Never holds a secret."""

    public_id = models.CharField(
        max_length=40, unique=True, default=partial(public_id, "audit", 24), editable=False
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="audit_log")
    action = models.CharField(max_length=64)  # "<target type>.<verb>", e.g. "project.archived"
    actor_type = models.CharField(max_length=16)  # user | api_key | invitee | system
    actor_id = models.CharField(max_length=40, blank=True)
    actor_user_id = models.CharField(max_length=40, blank=True)
    target_type = models.CharField(max_length=40)
    target_id = models.CharField(max_length=40)
    project_id = models.CharField(max_length=40, blank=True)
    changes = models.JSONField(default=dict, blank=True)  # {field: {"before": …, "after": …}}
    request_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["organization", "created_at"], name="audit_org_time")]
        verbose_name_plural = "audit log entries"

    def __str__(self) -> str:
        return f"{self.action} {self.target_id} by {self.actor_id or self.actor_type}"


class BudgetNotice(models.Model):
    """A soft-budget e-mail that went out: at most one per scope and month."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=40)  # "p<project pk>" or "k<key pk>"
    month = models.CharField(max_length=7)  # "2026-12"
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "month"], name="one_budget_notice_a_month")]

    def __str__(self) -> str:
        return f"{self.scope} {self.month}"
