from __future__ import annotations

from functools import partial

from django.db import models
from django.utils import timezone

from gateway.ids import public_id
from organizations.models import Organization, Project


class Provider(models.Model):
    """An OpenAI-compatible upstream (vLLM, llama.cpp, Ollama, OpenAI). Operator configuration."""

    public_id = models.CharField(
        max_length=40, unique=True, default=partial(public_id, "prov", 24), editable=False
    )
    name = models.CharField(max_length=200)
    base_url = models.URLField(max_length=500)
    # Fernet token made with MODEL_PROVIDER_SECRET (inference.crypto); never the plain key.
    api_key_encrypted = models.TextField(blank=True, editable=False)
    active = models.BooleanField(default=True)
    # Scope: none = every tenant; an organization or a project = only that tenant's callers.
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.CASCADE, related_name="providers"
    )
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="providers"
    )
    # Registered from JAN_INFERENCE_MODEL_URL; kept in step with that variable.
    is_default = models.BooleanField(default=False)
    # Model-id glob → the endpoints those models serve, for upstreams whose /v1/models does not
    # say (inference.endpoints); models matching no pattern serve every endpoint.
    model_endpoints = models.JSONField(default=dict, blank=True)
    healthy = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_check_at = models.DateTimeField(null=True, blank=True)
    # When a health poll last found it well; web workers end their traffic ejections at this.
    last_good_poll_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_provider"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.base_url})"


class ProviderModel(models.Model):
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    model_id = models.CharField(max_length=300)
    owned_by = models.CharField(max_length=200, blank=True)
    created = models.BigIntegerField(default=0)  # the upstream's `created`, unix seconds
    # The endpoints the upstream's /v1/models says the model serves; empty when it does not say.
    endpoints = models.JSONField(default=list, blank=True)
    # False once the upstream stopped listing it; kept for history and usage joins.
    available = models.BooleanField(default=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "model_id"], name="one_row_per_provider_model")
        ]

    def __str__(self) -> str:
        return f"{self.model_id} @ {self.provider_id}"


class ModelPrice(models.Model):
    """What one provider charges for one model, per million tokens. Usage rows store their cost at
    the price of their time, so changing a price never rewrites past costs."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="prices")
    model_id = models.CharField(max_length=300)
    input_per_million = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    cached_input_per_million = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    output_per_million = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    currency = models.CharField(max_length=8, default="usd")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "model_id"], name="one_price_per_provider_model"),
            models.CheckConstraint(
                condition=models.Q(input_per_million__gte=0)
                & models.Q(cached_input_per_million__gte=0)
                & models.Q(output_per_million__gte=0),
                name="prices_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} @ {self.provider_id}: {self.input_per_million}/{self.output_per_million} {self.currency}"


class UsageRecord(models.Model):
    """One proxied chat completion. Written in batches, off the request path (inference.usage)."""

    class Outcome(models.TextChoices):
        SUCCESS = "success"
        UPSTREAM_ERROR = "upstream_error"
        CLIENT_ERROR = "client_error"
        TIMEOUT = "timeout"
        CLIENT_DISCONNECTED = "client_disconnected"
        UNAVAILABLE = "unavailable"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, null=True, on_delete=models.CASCADE, related_name="+")
    api_key_id = models.BigIntegerField(null=True, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    model = models.CharField(max_length=300)
    provider = models.ForeignKey(Provider, null=True, on_delete=models.SET_NULL, related_name="+")
    endpoint = models.CharField(max_length=64, default="chat.completions")
    stream = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    # At the provider's price for the model when the call ended (0 when it has no price).
    cost = models.DecimalField(max_digits=20, decimal_places=10, default=0)
    currency = models.CharField(max_length=8, default="usd")
    latency_ms = models.FloatField(default=0)
    time_to_first_token_ms = models.FloatField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(default=200)
    outcome = models.CharField(max_length=32, choices=Outcome.choices)
    request_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "created_at"]),
            models.Index(fields=["project", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.total_tokens} tokens ({self.outcome})"
