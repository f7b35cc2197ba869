"""API-key lookups without the database on the hot path.

Three tiers: a per-process dict (1 s), Redis (API_KEY_CACHE_SECONDS, shared by every worker and
replica), then the database. Revoking, disabling or deleting a key deletes its Redis entry at
once, so every worker stops accepting it when its 1 s local entry lapses. Without Redis (the
embedded default) only the 1 s local tier exists, which keeps the same guarantee. When Redis
fails, lookups go on from the local tier and the database (logged), never an error.

Only the HMAC of a key is ever used as a cache key; the key itself is never stored.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from django.conf import settings
from redis.exceptions import RedisError

from gateway.background import run_sync
from gateway.redis import async_client, sync_client

logger = logging.getLogger(__name__)

LOCAL_TTL_SECONDS = 1.0
_INVALIDATE_RETRY_SECONDS = 0.5
_MISSING_TTL_SECONDS = 30  # unknown keys: random strings that can never become valid later
_PREFIX = "apikey:v3:"  # v2: entries carry rate limits; v3: and model allow-lists and budgets

# A limit rule: (scope, model, requests/min, tokens/min, concurrent streams). The scope is
# "k<key pk>" for a key's own limits or "p<project pk>" for its project's; model "*" is every
# model together; 0 is no limit. Plain tuples: they cross Redis as JSON and cost nothing to read.
RateRule = tuple[str, str, int, int, int]
# A monthly budget: (scope, hard limit, soft limit), limits in billionths of BUDGET_CURRENCY and 0
# for none; scope as above (organizations.budgets).
Budget = tuple[str, int, int]


@dataclass(frozen=True)
class KeySnapshot:
    """What authentication needs to know about a key, valid at the time it was read."""

    id: int
    public_id: str
    key_type: str
    organization_id: int
    organization_public_id: str
    project_id: int | None
    project_public_id: str | None
    user_id: int | None
    user_public_id: str | None
    service_account_id: int | None
    expires_at: float | None  # unix seconds
    usable: bool  # enabled, not deleted, organization and project alive, owner enabled
    # The key's own limits and, for a key bound to a project, the project's (organizations.ratelimits).
    rate_limits: tuple[RateRule, ...] = ()
    # Allow-lists of model ids or globs: the key's own and its project's (organizations.model_access).
    model_access: tuple[tuple[str, ...], ...] = ()
    # Monthly budgets: the key's own and its project's.
    budgets: tuple[Budget, ...] = ()


_local: dict[str, tuple[float, KeySnapshot | None]] = {}


def _encode(snapshot: KeySnapshot | None) -> bytes:
    return orjson.dumps(asdict(snapshot) if snapshot else None)


def _decode(raw: bytes | str) -> KeySnapshot | None:
    data: dict[str, Any] | None = orjson.loads(raw)
    if not data:
        return None
    data["rate_limits"] = tuple(tuple(rule) for rule in data.get("rate_limits", ()))
    data["model_access"] = tuple(tuple(allowed) for allowed in data.get("model_access", ()))
    data["budgets"] = tuple(tuple(budget) for budget in data.get("budgets", ()))
    return KeySnapshot(**data)


def _remember_locally(key_hash: str, snapshot: KeySnapshot | None) -> None:
    if len(_local) > 50_000:  # bounded: garbage keys must not grow memory without limit
        _local.clear()
    _local[key_hash] = (time.monotonic() + LOCAL_TTL_SECONDS, snapshot)


def _local_get(key_hash: str) -> tuple[bool, KeySnapshot | None]:
    entry = _local.get(key_hash)
    if entry is not None and entry[0] > time.monotonic():
        return True, entry[1]
    return False, None


def _ttl(snapshot: KeySnapshot | None) -> int:
    return int(settings.API_KEY_CACHE_SECONDS) if snapshot else _MISSING_TTL_SECONDS


# A fill may have read the key just before a revocation committed and arrive after the
# revocation deleted the entry; the revocation leaves this marker for a while, and a fill
# that finds it does not write (the next lookup reads the database again).
_REVOKED_PREFIX = "apikey:revoked:"
_REVOKED_MARKER_SECONDS = 10
_FILL_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"""


def _fill_keys_and_args(key_hash: str, snapshot: KeySnapshot | None) -> tuple[str, str, bytes, int]:
    """_FILL_SCRIPT's keys and arguments: store the snapshot unless the key was revoked meanwhile."""
    return _PREFIX + key_hash, _REVOKED_PREFIX + key_hash, _encode(snapshot), _ttl(snapshot)


def _load(key_hash: str) -> KeySnapshot | None:
    """The database's answer. A replica answers only if it has applied every change recorded,
    so a revocation is never read back as an active key (gateway.db_router)."""
    from gateway.db_router import authoritative
    from organizations.selectors import api_key_snapshot_load

    with authoritative():
        return api_key_snapshot_load(key_hash=key_hash)


def _redis_failed(action: str) -> None:
    # Served from this process and the database meanwhile; the key itself never reaches a log.
    logger.warning("API-key cache: Redis unavailable (%s); using the database", action, exc_info=True)


def snapshot_get(key_hash: str) -> KeySnapshot | None:
    """Sync lookup (DRF views, MCP, Celery)."""
    hit, snapshot = _local_get(key_hash)
    if hit:
        return snapshot
    client = sync_client()
    if client is not None:
        try:
            raw = client.get(_PREFIX + key_hash)
        except RedisError:
            _redis_failed("read")
            client = None
        else:
            if raw is not None:
                snapshot = _decode(raw)
                _remember_locally(key_hash, snapshot)
                return snapshot
    snapshot = _load(key_hash)
    if client is not None:
        try:
            client.eval(_FILL_SCRIPT, 2, *_fill_keys_and_args(key_hash, snapshot))
        except RedisError:
            _redis_failed("fill")
    _remember_locally(key_hash, snapshot)
    return snapshot


async def asnapshot_get(key_hash: str) -> KeySnapshot | None:
    """Async lookup for the hot path: no thread hop unless the database must be asked."""
    hit, snapshot = _local_get(key_hash)
    if hit:
        return snapshot
    client = async_client()
    if client is not None:
        try:
            raw = await client.get(_PREFIX + key_hash)
        except RedisError:
            _redis_failed("read")
            client = None
        else:
            if raw is not None:
                snapshot = _decode(raw)
                _remember_locally(key_hash, snapshot)
                return snapshot
    snapshot = await run_sync(_load, key_hash)
    if client is not None:
        try:
            await client.eval(_FILL_SCRIPT, 2, *_fill_keys_and_args(key_hash, snapshot))
        except RedisError:
            _redis_failed("fill")
    _remember_locally(key_hash, snapshot)
    return snapshot


def invalidate(key_hashes: list[str]) -> None:
    """Forget keys everywhere (called after the change commits).

    If Redis cannot be told, its entries would outlive the outage and admit the keys again once
    it is back: a background thread keeps trying until it succeeds or the entries have expired.
    """
    for key_hash in key_hashes:
        _local.pop(key_hash, None)
    if not key_hashes or sync_client() is None:
        return
    if not _forget_in_redis(key_hashes):
        _redis_failed("invalidate")
        threading.Thread(target=_retry_forget, args=(list(key_hashes),), daemon=True).start()


def _forget_in_redis(key_hashes: list[str]) -> bool:
    client = sync_client()
    if client is None:
        return True
    try:
        pipe = client.pipeline(transaction=False)
        pipe.delete(*(_PREFIX + key_hash for key_hash in key_hashes))
        for key_hash in key_hashes:
            pipe.set(_REVOKED_PREFIX + key_hash, b"1", ex=_REVOKED_MARKER_SECONDS)
        pipe.execute()
    except RedisError:
        return False
    return True


def _retry_forget(key_hashes: list[str]) -> None:
    deadline = time.monotonic() + float(settings.API_KEY_CACHE_SECONDS)
    while time.monotonic() < deadline:
        time.sleep(_INVALIDATE_RETRY_SECONDS)
        if _forget_in_redis(key_hashes):
            logger.info("API-key cache: revocations delivered to Redis after an outage")
            return
