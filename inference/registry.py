"""The in-memory model registry of one web worker, and its outlier detection.

Requests never query the database for routing: they read this snapshot. It reloads from the
database when the shared version counter in Redis moves (a provider changed, or a health poll
finished) — checked at most every MODEL_REGISTRY_REFRESH_SECONDS — and at least every 30 s.
Without Redis it simply reloads every MODEL_REGISTRY_REFRESH_SECONDS. A reload that fails
(PostgreSQL down) keeps the previous table; a Redis that fails is treated as absent for a while.
Routing must never fail because a store behind it blinked.

Who decides that a provider is down, after Envoy's outlier detection:

- The health poll (inference.services.provider_check) is the authority. After
  MODEL_HEALTH_FAILURE_THRESHOLD failed polls the provider is unhealthy for every worker; one good
  poll makes it healthy again and ends any ejection below on every worker at their next refresh.
- Real traffic ejects a provider from this worker's rotation only after
  PROVIDER_EJECT_CONSECUTIVE_FAILURES failures in a row across requests (5xx answers, connection
  failures, streams cut by the server). Any answer below 500 resets the count, so one caller whose
  requests make the model server fail now and then cannot take it out of rotation for everyone.
- A provider is never ejected while it is the last live one of any model it serves, and when
  more than PROVIDER_PANIC_THRESHOLD_PERCENT of a model's healthy providers are ejected the
  ejections are ignored for that model (Envoy's panic mode): a few bad requests must not turn a
  working model into a 503.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings

from gateway import errors
from gateway.background import run_sync
from gateway.redis import async_client
from inference.selectors import Route, routes_load
from inference.services import REGISTRY_VERSION_KEY

logger = logging.getLogger(__name__)

_MAX_AGE_SECONDS = 30.0
# After Redis failed, read the database on the periodic schedule instead of asking Redis for the
# version on every refresh: a dead Redis costs a connection timeout per attempt.
_REDIS_RETRY_SECONDS = 10.0


@dataclass
class _Outlier:
    """One provider's traffic record on this worker."""

    consecutive_failures: int = 0
    ejected_until: float = 0.0  # monotonic; 0: in rotation
    ejected_at: float = 0.0  # wall clock, compared with the time of the provider's last good poll


class Registry:
    def __init__(self) -> None:
        self._by_model: dict[str, list[Route]] = {}
        self._by_provider: dict[int, list[Route]] = {}
        self._ever_loaded = False
        self._loaded_at = 0.0
        self._checked_at = 0.0
        self._version: bytes | str | None = None
        self._lock: asyncio.Lock | None = None
        self._outliers: dict[int, _Outlier] = {}
        self._redis_failed_at = 0.0

    # --- The routing table --------------------------------------------------------------------

    async def _maybe_refresh(self) -> None:
        # `_checked_at` moves on every attempt, failed ones included: while the database is down,
        # one request per interval tries to reload, not every request.
        now = time.monotonic()
        if self._ever_loaded and now - self._checked_at < settings.MODEL_REGISTRY_REFRESH_SECONDS:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        if self._lock.locked() and self._ever_loaded:
            return  # someone is refreshing; the current snapshot is good enough meanwhile
        async with self._lock:
            if (
                self._ever_loaded
                and time.monotonic() - self._checked_at < settings.MODEL_REGISTRY_REFRESH_SECONDS
            ):
                return
            self._checked_at = time.monotonic()
            version = await self._shared_version()
            if version is not None:
                fresh = self._loaded_at and time.monotonic() - self._loaded_at < _MAX_AGE_SECONDS
                if fresh and version == self._version:
                    return
            elif (
                self._redis_failed_at
                and self._loaded_at
                and time.monotonic() - self._loaded_at < _MAX_AGE_SECONDS
            ):
                return  # Redis is down: keep serving this table, re-read the database now and then
            if await self._reload_safely():
                self._version = version

    async def _shared_version(self) -> bytes | str | None:
        """The version in Redis; None without Redis, or while Redis is failing."""
        redis = async_client()
        if redis is None:
            return None
        if self._redis_failed_at and time.monotonic() - self._redis_failed_at < _REDIS_RETRY_SECONDS:
            return None
        try:
            version: bytes | str | None = await redis.get(REGISTRY_VERSION_KEY)
        except Exception:
            if not self._redis_failed_at:
                logger.warning(
                    "model registry: Redis unavailable, serving the table in memory", exc_info=True
                )
            self._redis_failed_at = time.monotonic()
            return None
        if self._redis_failed_at:
            logger.info("model registry: Redis is back")
            self._redis_failed_at = 0.0
            self._version = None  # changes may have been missed meanwhile: reload once
        return version

    async def _reload_safely(self) -> bool:
        """Reload; on a database failure keep the table we have (or answer 503 if there is none)."""
        try:
            await self.reload()
        except Exception:
            if not self._ever_loaded:
                logger.exception("model registry: the routing table could not be loaded")
                raise errors.ServiceUnavailable(
                    "The model registry is unavailable right now; please retry shortly.",
                    code="registry_unavailable",
                ) from None
            logger.warning("model registry: reload failed, keeping the previous table", exc_info=True)
            return False
        return True

    async def reload(self) -> None:
        routes = await run_sync(routes_load)
        by_model: dict[str, list[Route]] = defaultdict(list)
        by_provider: dict[int, list[Route]] = defaultdict(list)
        for route in routes:
            by_model[route.model_id].append(route)
            by_provider[route.provider_id].append(route)
        self._by_model = dict(by_model)
        self._by_provider = dict(by_provider)
        self._loaded_at = self._checked_at = time.monotonic()
        self._ever_loaded = True

    def invalidate(self) -> None:
        """Reload at the next request (the table is kept if that reload fails)."""
        self._loaded_at = self._checked_at = 0.0

    def reset(self) -> None:
        """Forget every traffic record (tests, and a fresh start)."""
        self._outliers.clear()

    # --- Routing ------------------------------------------------------------------------------

    def _ejected(self, route: Route) -> bool:
        outlier = self._outliers.get(route.provider_id)
        if outlier is None or not outlier.ejected_until:
            return False
        if outlier.ejected_until <= time.monotonic() or route.last_good_poll_at >= outlier.ejected_at:
            # The ejection lapsed, or a health poll found the provider well after it started.
            outlier.ejected_until = outlier.ejected_at = 0.0
            outlier.consecutive_failures = 0
            return False
        return True

    def _live(self, route: Route) -> bool:
        return route.healthy and not self._ejected(route)

    def _in_rotation(self, healthy: list[Route]) -> list[Route]:
        """The healthy routes minus ejected ones, unless too many are ejected (panic mode)."""
        live = [route for route in healthy if not self._ejected(route)]
        if len(live) * 100 < len(healthy) * settings.PROVIDER_PANIC_THRESHOLD_PERCENT:
            return list(healthy)
        return live

    async def models_for(self, organization_id: int, project_id: int | None) -> list[Route]:
        """One route per model id visible to the tenant (for /v1/models)."""
        await self._maybe_refresh()
        listed = []
        for routes in self._by_model.values():
            healthy = [r for r in routes if r.visible_to(organization_id, project_id) and r.healthy]
            visible = self._in_rotation(healthy)
            if visible:
                listed.append(visible[0])
        return sorted(listed, key=lambda route: route.model_id)

    async def routes_for(
        self, model: str, organization_id: int, project_id: int | None
    ) -> tuple[list[Route], bool]:
        """(routes in rotation, in a load-spreading order; whether the model is known at all)."""
        await self._maybe_refresh()
        routes = [r for r in self._by_model.get(model, []) if r.visible_to(organization_id, project_id)]
        live = self._in_rotation([r for r in routes if r.healthy])
        random.shuffle(live)  # spread load across providers of the same model
        return live, bool(routes)

    async def routes_serving(
        self, model: str, organization_id: int, project_id: int | None, endpoint: str
    ) -> tuple[list[Route], str]:
        """Routes in rotation for one endpoint, and "ok", "unknown" (no provider of ours lists the
        model for this caller) or "unsupported" (it is listed, but none serves this endpoint)."""
        await self._maybe_refresh()
        routes = [r for r in self._by_model.get(model, []) if r.visible_to(organization_id, project_id)]
        if not routes:
            return [], "unknown"
        serving = [r for r in routes if endpoint in r.endpoints]
        if not serving:
            return [], "unsupported"
        live = self._in_rotation([r for r in serving if r.healthy])
        random.shuffle(live)
        return live, "ok"

    # --- Outlier detection (what real traffic says) --------------------------------------------

    def record_success(self, provider_id: int) -> None:
        """The provider answered (below 500): its run of failures is over."""
        outlier = self._outliers.get(provider_id)
        if outlier is not None:
            outlier.consecutive_failures = 0

    def record_failure(self, provider_id: int) -> bool:
        """Count a failure the provider caused; True if this one ejected it from rotation."""
        outlier = self._outliers.setdefault(provider_id, _Outlier())
        if outlier.ejected_until and outlier.ejected_until > time.monotonic():
            return False  # already out (traffic reached it through panic mode or a retry)
        outlier.consecutive_failures += 1
        if outlier.consecutive_failures < settings.PROVIDER_EJECT_CONSECUTIVE_FAILURES:
            return False
        if not self._replaceable(provider_id):
            return False  # the last live provider of one of its models stays in rotation
        outlier.consecutive_failures = 0
        outlier.ejected_until = time.monotonic() + settings.PROVIDER_EJECT_SECONDS
        outlier.ejected_at = time.time()
        return True

    def _replaceable(self, provider_id: int) -> bool:
        """Every model the provider serves has another live provider for the same callers."""
        for route in self._by_provider.get(provider_id, []):
            others = self._by_model.get(route.model_id, [])
            if not any(
                other.provider_id != provider_id and _covers(other, route) and self._live(other)
                for other in others
            ):
                return False
        return True


def _covers(other: Route, route: Route) -> bool:
    """`other` serves at least every caller that `route` serves."""
    if other.project_id is not None:
        return other.project_id == route.project_id
    if other.organization_id is not None:
        return other.organization_id == route.organization_id
    return True


registry = Registry()
