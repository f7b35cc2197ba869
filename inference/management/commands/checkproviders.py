"""python manage.py checkproviders

Registers the JAN_INFERENCE_MODEL_URL provider if it is set, then polls every active provider's
/v1/models now (what beat does every MODEL_HEALTH_INTERVAL_SECONDS) and prints the outcome, so an
operator sees at once whether the gateway can reach its model servers.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from inference import services
from inference.models import Provider


class Command(BaseCommand):
    help = "Poll every active provider now and print its health and models."

    def handle(self, *args: Any, **options: Any) -> None:
        services.provider_ensure_default()
        unhealthy = 0
        for provider in Provider.objects.filter(active=True).order_by("pk"):
            checked = services.provider_check(provider_id=provider.pk, force=True) or provider
            models = ", ".join(checked.models.order_by("model_id").values_list("model_id", flat=True))
            state = "healthy" if checked.healthy else f"unhealthy ({checked.last_error})"
            unhealthy += 0 if checked.healthy else 1
            self.stdout.write(
                f"{checked.public_id} {checked.name} {checked.base_url}: {state}; models: {models or '-'}"
            )
        if unhealthy:
            raise CommandError(f"{unhealthy} provider(s) unhealthy")
