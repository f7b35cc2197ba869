"""Writes for the model registry: providers, their models, health, and the circuit breaker."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from gateway.errors import InvalidRequest
from gateway.redis import sync_client
from inference import crypto, endpoints, netguard
from inference.models import ModelPrice, Provider, ProviderModel
from inference.selectors import provider_is_public_only
from inference.upstream import api_url
from inference.upstream import sync_client as http_client
from organizations.models import Organization, Project

logger = logging.getLogger(__name__)

REGISTRY_VERSION_KEY = "inference:registry:version"
_HEALTH_TIMEOUT_SECONDS = 10.0


def registry_bump() -> None:
    """Tell every web worker to reload the registry now rather than at its next periodic reload."""
    client = sync_client()
    if client is not None:
        # A fresh random token, not a counter: after a Redis restart or flush a counter would
        # count 1, 2, … again and a worker that last saw "2" would miss the next change.
        try:
            client.set(REGISTRY_VERSION_KEY, uuid.uuid4().hex)
        except redis.RedisError:
            # The change is in the database already; workers that cannot reach Redis re-read
            # it on their periodic reload, so a dead Redis must not fail the write or the poll.
            logger.warning("registry version not bumped: Redis unavailable", exc_info=True)


def validate_base_url(base_url: str, *, public_only: bool) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidRequest(
            "base_url must be an http(s) URL of an OpenAI-compatible server.", param="base_url"
        )
    if parts.username or parts.password:
        raise InvalidRequest("Put the provider's key in api_key, not in base_url.", param="base_url")
    if "?" in base_url or "#" in base_url:
        # Paths are appended to base_url (`/v1/models`): after a `?` or `#` they would land in
        # the query or the fragment and the gateway would call another URL than it shows.
        raise InvalidRequest("base_url must not have a query or a fragment.", param="base_url")
    if public_only:
        netguard.check_public_url(base_url)
    return base_url.rstrip("/")


@transaction.atomic
def provider_create(
    *,
    name: str,
    base_url: str,
    api_key: str = "",
    active: bool = True,
    organization: Organization | None = None,
    organization_id: int | None = None,
    project: Project | None = None,
    is_default: bool = False,
    model_endpoints: dict[str, Any] | None = None,
    prices: list[dict[str, Any]] | None = None,
) -> Provider:
    if organization is not None:
        organization_id = organization.pk
    if project is not None and project.organization_id != organization_id:
        raise InvalidRequest("The project is not in this organization.", param="project_id")
    public_only = organization_id is not None and not settings.PROVIDER_PRIVATE_URLS_ALLOWED
    provider = Provider.objects.create(
        name=name,
        base_url=validate_base_url(base_url, public_only=public_only),
        api_key_encrypted=crypto.encrypt(api_key),
        active=active,
        organization_id=organization_id,
        project=project,
        is_default=is_default,
        model_endpoints=endpoints.validate_model_endpoints(model_endpoints or {}),
    )
    if prices:
        provider_prices_set(provider=provider, prices=prices)
    transaction.on_commit(registry_bump)
    return provider


@transaction.atomic
def provider_prices_set(*, provider: Provider, prices: list[dict[str, Any]]) -> list[ModelPrice]:
    """Replace the provider's prices. Rows already written keep the cost of their time; workers
    price new calls with these from their next registry reload (bumped now)."""
    models = [str(price["model"]) for price in prices]
    if len(set(models)) != len(models):
        raise InvalidRequest("Each model may have one price per provider.", param="prices")
    ModelPrice.objects.filter(provider=provider).exclude(model_id__in=models).delete()
    saved = []
    for price in prices:
        row, _ = ModelPrice.objects.update_or_create(
            provider=provider,
            model_id=price["model"],
            defaults={
                "input_per_million": price["input_per_million"],
                # Without a cached-input price, cached tokens cost what other input costs.
                "cached_input_per_million": price["input_per_million"]
                if price.get("cached_input_per_million") is None
                else price["cached_input_per_million"],
                "output_per_million": price["output_per_million"],
                "currency": price.get("currency") or "usd",
            },
        )
        saved.append(row)
    transaction.on_commit(registry_bump)
    return saved


@transaction.atomic
def provider_update(*, provider: Provider, **changes: Any) -> Provider:
    if "base_url" in changes:
        provider.base_url = validate_base_url(
            changes.pop("base_url"), public_only=provider_is_public_only(provider)
        )
    if "api_key" in changes:
        provider.api_key_encrypted = crypto.encrypt(changes.pop("api_key") or "")
    if "prices" in changes:
        provider_prices_set(provider=provider, prices=changes.pop("prices"))
    if "model_endpoints" in changes:
        provider.model_endpoints = endpoints.validate_model_endpoints(changes.pop("model_endpoints"))
    for field in ("name", "active"):
        if field in changes:
            setattr(provider, field, changes.pop(field))
    provider.save()
    transaction.on_commit(registry_bump)
    return provider


@transaction.atomic
def provider_delete(*, provider: Provider) -> None:
    provider.delete()
    transaction.on_commit(registry_bump)


def provider_ensure_default() -> Provider | None:
    """Keep the provider named by JAN_INFERENCE_MODEL_URL registered and pointing there."""
    url = settings.JAN_INFERENCE_MODEL_URL
    if not url:
        return None
    existing = Provider.objects.filter(is_default=True).first()
    if existing is None:
        return provider_create(name="default", base_url=url, is_default=True)
    if existing.base_url != url.rstrip("/"):
        return provider_update(provider=existing, base_url=url)
    return existing


def _claim_check(provider_id: int, interval: float) -> bool:
    """Conditional UPDATE: exactly one worker checks a provider per interval."""
    now = timezone.now()
    threshold = now - timedelta(seconds=interval * 0.8)
    claimed = (
        Provider.objects.filter(pk=provider_id, active=True)
        .filter(Q(last_check_at__isnull=True) | Q(last_check_at__lt=threshold))
        .update(last_check_at=now)
    )
    return claimed == 1


def _fetch_models(provider: Provider) -> list[dict[str, Any]]:
    headers = {}
    if key := crypto.decrypt(provider.api_key_encrypted):
        headers["Authorization"] = f"Bearer {key}"
    # An organization's provider: the client resolves the name once and dials only a public
    # address from that answer (names can move to private addresses after registration).
    with http_client(_HEALTH_TIMEOUT_SECONDS, public_only=provider_is_public_only(provider)) as client:
        response = client.get(api_url(provider.base_url, "models"), headers=headers)
    response.raise_for_status()
    data = response.json().get("data")
    if not isinstance(data, list):
        raise ValueError("the upstream's /v1/models has no data list")
    return [entry for entry in data if isinstance(entry, dict) and isinstance(entry.get("id"), str)]


@transaction.atomic
def _models_sync(provider: Provider, listed: list[dict[str, Any]]) -> None:
    now = timezone.now()
    seen = set()
    for entry in listed:
        seen.add(entry["id"])
        ProviderModel.objects.update_or_create(
            provider=provider,
            model_id=entry["id"],
            defaults={
                "owned_by": str(entry.get("owned_by") or ""),
                "created": int(entry.get("created") or 0),
                "endpoints": endpoints.learned_endpoints(entry),
                "available": True,
                "last_seen_at": now,
            },
        )
    ProviderModel.objects.filter(provider=provider, available=True).exclude(model_id__in=seen).update(
        available=False
    )


def provider_check(*, provider_id: int, force: bool = False) -> Provider | None:
    """Poll one provider's /v1/models and record health, latency and its model list.

    Safe to run twice: without `force`, only the worker whose conditional UPDATE claims the
    provider for this interval polls it. Returns None when another worker has the claim.
    """
    if not force and not _claim_check(provider_id, settings.MODEL_HEALTH_INTERVAL_SECONDS):
        return None
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        return None
    import httpx  # with the client that raises its errors (inference.upstream.sync_client)

    started = time.perf_counter()
    try:
        listed = _fetch_models(provider)
    except (httpx.HTTPError, ValueError, InvalidRequest) as exc:
        provider_record_failure(provider_id=provider.pk, error=f"health check: {type(exc).__name__}: {exc}")
        provider.refresh_from_db()
        return provider
    latency_ms = (time.perf_counter() - started) * 1000
    _models_sync(provider, listed)
    was_healthy = provider.healthy
    now = timezone.now()
    Provider.objects.filter(pk=provider.pk).update(
        healthy=True,
        consecutive_failures=0,
        last_error="",
        latency_ms=latency_ms,
        last_check_at=now,
        last_good_poll_at=now,
    )
    provider.refresh_from_db()
    if not was_healthy:
        logger.info("provider healthy again", extra={"provider_id": provider.public_id})
    # Every good poll, not only a recovery: web workers end their traffic ejections of this
    # provider when they see it, and they look when the version moves.
    registry_bump()
    return provider


def provider_record_failure(*, provider_id: int, error: str) -> None:
    """Count a failed health poll; at the threshold the provider is unhealthy for everyone.

    Only polls count here: failures of real traffic are judged per worker by the registry's
    outlier detection, so that callers cannot mark a shared provider down for all tenants.
    """
    threshold = settings.MODEL_HEALTH_FAILURE_THRESHOLD
    Provider.objects.filter(pk=provider_id).update(
        consecutive_failures=F("consecutive_failures") + 1, last_error=error[:2000]
    )
    if Provider.objects.filter(pk=provider_id, healthy=True, consecutive_failures__gte=threshold).update(
        healthy=False
    ):
        logger.warning("provider marked unhealthy", extra={"provider_id": provider_id, "error": error[:200]})
        registry_bump()


def provider_ejection_record(*, provider_id: int, error: str) -> None:
    """Show the owner why a web worker took the provider out of its rotation (health unchanged)."""
    Provider.objects.filter(pk=provider_id).update(last_error=f"taken out of rotation: {error}"[:2000])


def providers_due() -> list[int]:
    return list(Provider.objects.filter(active=True).values_list("pk", flat=True))
