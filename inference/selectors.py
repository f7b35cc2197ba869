"""Reads for the model registry."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Q, QuerySet

from gateway.errors import NotFound
from inference import crypto
from inference.endpoints import ALL as EVERY_ENDPOINT
from inference.endpoints import effective_endpoints
from inference.models import ModelPrice, Provider, ProviderModel

Price = tuple[Decimal, Decimal, Decimal, str]


@dataclass(frozen=True)
class Route:
    """One way to serve a model: which provider, where, with which key, for whom."""

    provider_id: int
    provider_public_id: str
    base_url: str
    api_key: str
    organization_id: int | None
    project_id: int | None
    model_id: str
    owned_by: str
    created: int
    healthy: bool
    public_only: bool = False  # an organization's own provider: public addresses only (netguard)
    # Unix time of the provider's last good health poll (0: never): a poll after an ejection ends it.
    last_good_poll_at: float = 0.0
    endpoints: tuple[str, ...] = EVERY_ENDPOINT
    # (input, cached input, output) per million tokens and the currency; None: no price set.
    price: Price | None = None  # what it serves: chat.completions, completions, embeddings

    def visible_to(self, organization_id: int, project_id: int | None) -> bool:
        if self.project_id is not None:
            return self.project_id == project_id
        if self.organization_id is not None:
            return self.organization_id == organization_id
        return True


def prices_load() -> dict[tuple[int, str], Price]:
    """Every price, by (provider, model id); model id "*" is a provider's price for the rest."""
    return {
        (row.provider_id, row.model_id): (
            row.input_per_million,
            row.cached_input_per_million,
            row.output_per_million,
            row.currency,
        )
        for row in ModelPrice.objects.all()
    }


def routes_load() -> list[Route]:
    """Every model of every active provider, healthy or not, with its price: the registry's reload."""
    prices = prices_load()
    rows = (
        ProviderModel.objects.filter(available=True, provider__active=True)
        .select_related("provider")
        .order_by("provider_id", "model_id")
    )
    return [
        Route(
            provider_id=row.provider_id,
            provider_public_id=row.provider.public_id,
            base_url=row.provider.base_url,
            api_key=crypto.decrypt(row.provider.api_key_encrypted),
            organization_id=row.provider.organization_id,
            project_id=row.provider.project_id,
            model_id=row.model_id,
            owned_by=row.owned_by or row.provider.name,
            created=row.created,
            healthy=row.provider.healthy,
            public_only=provider_is_public_only(row.provider),
            last_good_poll_at=row.provider.last_good_poll_at.timestamp()
            if row.provider.last_good_poll_at
            else 0.0,
            endpoints=effective_endpoints(row.model_id, row.endpoints, row.provider.model_endpoints),
            price=prices.get((row.provider_id, row.model_id)) or prices.get((row.provider_id, "*")),
        )
        for row in rows
    ]


def provider_is_public_only(provider: Provider) -> bool:
    """Organizations' providers may not reach private networks unless the operator allows it."""
    return provider.organization_id is not None and not settings.PROVIDER_PRIVATE_URLS_ALLOWED


def provider_list(*, organization_id: int) -> QuerySet[Provider]:
    """Providers an organization's owners manage: their own, and the global ones (read-only)."""
    return Provider.objects.filter(
        Q(organization_id=organization_id) | Q(organization__isnull=True, project__isnull=True)
    )


def provider_get(*, organization_id: int, public_id: str) -> Provider:
    provider = provider_list(organization_id=organization_id).filter(public_id=public_id).first()
    if provider is None:
        raise NotFound(f"No provider with id '{public_id}'.", param="provider_id", code="provider_not_found")
    return provider
