from __future__ import annotations

from typing import Any

from rest_framework import serializers

from gateway.api import AmountField, StrictIn
from inference.models import ModelPrice, Provider


class ModelPriceIn(StrictIn):
    model = serializers.CharField(
        max_length=300, help_text='A model id, or "*" for the provider\'s other models.'
    )
    input_per_million = AmountField(max_digits=14, decimal_places=6)
    cached_input_per_million = AmountField(max_digits=14, decimal_places=6, required=False)
    output_per_million = AmountField(max_digits=14, decimal_places=6)
    currency = serializers.RegexField(r"^[a-z]{3}$", required=False, default="usd")


class ModelPriceOut(serializers.Serializer[ModelPrice]):
    model = serializers.CharField(source="model_id")
    input_per_million = serializers.DecimalField(max_digits=14, decimal_places=6, coerce_to_string=False)
    cached_input_per_million = serializers.DecimalField(
        max_digits=14, decimal_places=6, coerce_to_string=False
    )
    output_per_million = serializers.DecimalField(max_digits=14, decimal_places=6, coerce_to_string=False)
    currency = serializers.CharField()


class ProviderCreateIn(StrictIn):
    name = serializers.CharField(max_length=200)
    base_url = serializers.URLField(max_length=500)
    api_key = serializers.CharField(required=False, allow_blank=True, max_length=4000, write_only=True)
    active = serializers.BooleanField(required=False, default=True)
    project_id = serializers.CharField(required=False, allow_null=True, max_length=40)
    model_endpoints = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Model-id glob → the endpoints those models serve (chat.completions, completions, "
        "embeddings), for upstreams whose /v1/models does not say. Unmatched models serve all.",
    )
    prices = ModelPriceIn(
        many=True,
        required=False,
        help_text="Replaces the provider's prices (per million tokens). Usage rows keep the price of their time.",
    )


class ProviderUpdateIn(ProviderCreateIn):
    name = serializers.CharField(max_length=200, required=False)
    base_url = serializers.URLField(max_length=500, required=False)
    active = serializers.BooleanField(required=False)


class ProviderOut(serializers.Serializer[Provider]):
    id = serializers.CharField(source="public_id")
    object = serializers.SerializerMethodField()
    name = serializers.CharField()
    base_url = serializers.CharField(
        allow_null=True, help_text="null for global providers: the operator's network is not shown."
    )
    has_api_key = serializers.SerializerMethodField()
    active = serializers.BooleanField()
    scope = serializers.SerializerMethodField()
    project_id = serializers.SerializerMethodField()
    healthy = serializers.BooleanField()
    consecutive_failures = serializers.IntegerField()
    last_check_at = serializers.SerializerMethodField()
    last_error = serializers.CharField(allow_null=True, help_text="null for global providers.")
    latency_ms = serializers.FloatField(allow_null=True)
    models = serializers.SerializerMethodField()
    model_endpoints = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    prices = ModelPriceOut(many=True)
    created_at = serializers.SerializerMethodField()

    def to_representation(self, instance: Provider) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if instance.organization_id is None:
            # Global providers are the operator's: any organization owner (and anyone can own an
            # organization) sees that they exist and are healthy, not where they live inside the
            # operator's network nor the errors that would describe it.
            data["base_url"] = data["last_error"] = None
        return data

    def get_object(self, provider: Provider) -> str:
        return "model.provider"

    def get_has_api_key(self, provider: Provider) -> bool:
        return bool(provider.api_key_encrypted)

    def get_scope(self, provider: Provider) -> str:
        return "project" if provider.project_id else "organization" if provider.organization_id else "global"

    def get_project_id(self, provider: Provider) -> str | None:
        return provider.project.public_id if provider.project else None

    def get_last_check_at(self, provider: Provider) -> int | None:
        return int(provider.last_check_at.timestamp()) if provider.last_check_at else None

    def get_models(self, provider: Provider) -> list[str]:
        return [m.model_id for m in provider.models.all() if m.available]

    def get_created_at(self, provider: Provider) -> int:
        return int(provider.created_at.timestamp())


class ProviderListOut(serializers.Serializer[Any]):
    object = serializers.CharField()
    data = serializers.ListField(child=ProviderOut())  # type: ignore[assignment]  # OpenAI list field name


class ProviderDeletedOut(serializers.Serializer[Any]):
    id = serializers.CharField()
    object = serializers.CharField()
    deleted = serializers.BooleanField()
