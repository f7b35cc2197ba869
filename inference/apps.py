from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _register_default_provider(sender: AppConfig, **kwargs: Any) -> None:
    # JAN_INFERENCE_MODEL_URL is operator configuration, applied on every migrate (and by beat).
    from inference.services import provider_ensure_default

    if kwargs.get("using", "default") == "default":
        provider_ensure_default()


class InferenceConfig(AppConfig):
    name = "inference"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_register_default_provider, sender=self)
