from __future__ import annotations

from celery import shared_task


@shared_task(ignore_result=True)
def providers_poll() -> None:
    """Beat, every MODEL_HEALTH_INTERVAL_SECONDS: keep the default provider registered, then fan
    out one check per active provider. Duplicates are harmless: each check claims its provider."""
    from inference import services

    services.provider_ensure_default()
    for provider_id in services.providers_due():
        provider_check.delay(provider_id)


@shared_task(ignore_result=True, acks_late=True)
def provider_check(provider_id: int) -> None:
    """Poll one provider. Running it twice in an interval polls once (conditional UPDATE claim)."""
    from inference import services

    services.provider_check(provider_id=provider_id)
