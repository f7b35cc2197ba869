from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready


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


@shared_task(ignore_result=True)
def budgets_reconcile() -> None:
    """Beat, every BUDGET_RECONCILE_SECONDS: raise budget counters Redis lost back to what the
    month's usage rows show (inference.spend)."""
    from inference import spend

    spend.budgets_reconcile()


@worker_ready.connect
def _poll_at_start(**kwargs: Any) -> None:
    """A fresh `make run` should route to JAN_INFERENCE_MODEL_URL in seconds, not after the
    first beat interval: the worker polls once as soon as it is up."""
    providers_poll.delay()
