"""The in-memory model registry of one web worker.

Requests never query the database for routing: they read this snapshot. It reloads from the
database when the shared version counter in Redis moves (a provider changed or its health
flipped) — checked at most every MODEL_REGISTRY_REFRESH_SECONDS — and at least every 30 s.
Without Redis it simply reloads every MODEL_REGISTRY_REFRESH_SECONDS.

A provider that fails real traffic is ejected locally at once (circuit breaker) and, through
services.provider_record_failure, for every worker at their next refresh.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict

from django.conf import settings

from gateway.background import run_sync
from gateway.redis import async_client
from inference.selectors import Route, routes_load
from inference.services import REGISTRY_VERSION_KEY

_MAX_AGE_SECONDS = 30.0


class Registry:
    def __init__(self) -> None:
        self._by_model: dict[str, list[Route]] = {}
        self._loaded_at = 0.0
        self._checked_at = 0.0
        self._version: bytes | str | None = None
        self._lock: asyncio.Lock | None = None
        self._ejected_until: dict[int, float] = {}

    async def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if self._loaded_at and now - self._checked_at < settings.MODEL_REGISTRY_REFRESH_SECONDS:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        if self._lock.locked() and self._loaded_at:
            return  # someone is refreshing; the current snapshot is good enough meanwhile
        async with self._lock:
            if (
                self._loaded_at
                and time.monotonic() - self._checked_at < settings.MODEL_REGISTRY_REFRESH_SECONDS
            ):
                return
            self._checked_at = time.monotonic()
            version = None
            redis = async_client()
            if redis is not None:
                version = await redis.get(REGISTRY_VERSION_KEY)
                fresh = self._loaded_at and time.monotonic() - self._loaded_at < _MAX_AGE_SECONDS
                if fresh and version == self._version:
                    return
            await self.reload()
            self._version = version

    async def reload(self) -> None:
        routes = await run_sync(routes_load)
        by_model: dict[str, list[Route]] = defaultdict(list)
        for route in routes:
            by_model[route.model_id].append(route)
        self._by_model = dict(by_model)
        self._loaded_at = self._checked_at = time.monotonic()

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    def _live(self, route: Route) -> bool:
        if not route.healthy:
            return False
        until = self._ejected_until.get(route.provider_id)
        return until is None or until < time.monotonic()

    async def models_for(self, organization_id: int, project_id: int | None) -> list[Route]:
        """One route per model id visible to the tenant (for /v1/models)."""
        await self._maybe_refresh()
        listed = []
        for routes in self._by_model.values():
            visible = [r for r in routes if r.visible_to(organization_id, project_id) and self._live(r)]
            if visible:
                listed.append(visible[0])
        return sorted(listed, key=lambda route: route.model_id)

    async def routes_for(
        self, model: str, organization_id: int, project_id: int | None
    ) -> tuple[list[Route], bool]:
        """(healthy routes in a load-spreading order, whether the model is known at all)."""
        await self._maybe_refresh()
        routes = [r for r in self._by_model.get(model, []) if r.visible_to(organization_id, project_id)]
        live = [r for r in routes if self._live(r)]
        random.shuffle(live)  # spread load across providers of the same model
        return live, bool(routes)

    def eject(self, provider_id: int) -> None:
        self._ejected_until[provider_id] = time.monotonic() + settings.PROVIDER_EJECT_SECONDS


registry = Registry()
