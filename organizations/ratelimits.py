"""Rate limits and quotas: requests per minute, tokens per minute and concurrent streams, per
project (for one model or all together) and per API key.

The rules come with the principal (they live in the cached key entry), so a caller without
limits costs one loop over an empty tuple: no Redis round trip, no query.

Enforcement is one Lua script per request in Redis, so a limit holds across every worker and
replica: the script checks every rule that applies and only then counts the request, atomically.
Each rule keeps per-second buckets in a hash (requests, tokens) covering the last 60 seconds, a
sliding window exact to a second; concurrent streams are leases in a sorted set, given back by
`Admission.finish` or, if the worker died, after RATE_LIMIT_STREAM_LEASE_SECONDS. Time is Redis's
own clock, so replicas with skewed clocks agree. Every key of one organization shares a Redis
Cluster hash slot (`{org_…}`), which a multi-key script needs.

Tokens are counted from the real usage when the response ends (`finish`), so a token limit
refuses the requests that start after the recorded usage reached it; requests already running
may take the total past the limit.

Monthly budgets (organizations.budgets) are checked at admission and charged at `finish` with the
call's real cost, through the same Admission, so a caller with neither limits nor budgets still
costs nothing here.

Without REDIS_URL (the embedded default) the same algorithm runs in process memory: limits are
then per worker process, not shared.

If Redis fails, requests are admitted (and a warning logged): a broken counter store must not
take the API down with it.

Tool calls that spend the operator's credit (the MCP tools, the Responses API's server-side
web_search) are limited per project and per key through the same script, on counters of their
own (`admit_tool_call`): TOOL_CALLS_PER_MINUTE_PER_PROJECT and TOOL_CALLS_PER_MINUTE_PER_KEY,
and a project's rate limit for the model name `tool_calls` can lower its per-project figure.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import threading
import time
import weakref
from typing import Any

from django.conf import settings

from accounts.auth import Principal
from gateway import metrics
from gateway.errors import RateLimited
from gateway.redis import async_client
from organizations import budgets
from organizations.keycache import Budget, RateRule

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
_ALL = "*"
_KIND = {1: "requests", 2: "tokens", 3: "streams"}
_NAMES = {1: "requests per min (RPM)", 2: "tokens per min (TPM)", 3: "concurrent streams"}

# --- Redis scripts ---------------------------------------------------------------------------------

# KEYS: per rule, its requests hash, tokens hash and streams sorted set.
# ARGV: stream (1|0), lease id, lease ms, then per rule: requests/min, tokens/min, streams (0: none).
# Returns {admitted, refused kind, refused rule, retry ms, req limit, req remaining, req reset ms,
#          tok limit, tok remaining, tok reset ms, used}; -1: no such limit.
_ADMIT = """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
local oldest = sec - 59
local stream = ARGV[1] == '1'
local lease_ms = tonumber(ARGV[3])
local n = #KEYS / 3

local function window(key, limit)
  local raw = redis.call('HGETALL', key)
  local buckets, expired, total = {}, {}, 0
  for j = 1, #raw, 2 do
    local s, c = tonumber(raw[j]), tonumber(raw[j + 1])
    if s < oldest then expired[#expired + 1] = raw[j]
    else buckets[#buckets + 1] = {s, c}; total = total + c end
  end
  if #expired > 0 then redis.call('HDEL', key, unpack(expired)) end
  table.sort(buckets, function(a, b) return a[1] < b[1] end)
  local reset = 0
  if #buckets > 0 then reset = (buckets[#buckets][1] + 60) * 1000 - now end
  local retry = 0
  if total >= limit then
    local left = total
    for _, b in ipairs(buckets) do
      left = left - b[2]
      if left < limit then retry = (b[1] + 60) * 1000 - now; break end
    end
  end
  return total, retry, reset
end

local r_lim, r_rem, r_reset, t_lim, t_rem, t_reset = -1, -1, -1, -1, -1, -1
local kind, rule, retry, used = 0, 0, 0, 0
for i = 1, n do
  local rpm, tpm, max_streams = tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2]), tonumber(ARGV[3 * i + 3])
  if rpm > 0 then
    local total, wait, reset = window(KEYS[3 * i - 2], rpm)
    local remaining = rpm - total
    if r_rem < 0 or remaining < r_rem then r_lim, r_rem, r_reset = rpm, remaining, reset end
    if total >= rpm and wait >= retry then kind, rule, retry, used = 1, i, wait, total end
  end
  if tpm > 0 then
    local total, wait, reset = window(KEYS[3 * i - 1], tpm)
    local remaining = math.max(tpm - total, 0)
    if t_rem < 0 or remaining < t_rem then t_lim, t_rem, t_reset = tpm, remaining, reset end
    if total >= tpm and wait >= retry then kind, rule, retry, used = 2, i, wait, total end
  end
  if stream and max_streams > 0 then
    local key = KEYS[3 * i]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - lease_ms)
    local open = redis.call('ZCARD', key)
    if open >= max_streams and kind == 0 then kind, rule, retry, used = 3, i, 1000, open end
  end
end
if kind ~= 0 then
  return {0, kind, rule, retry, r_lim, math.max(r_rem, 0), r_reset, t_lim, t_rem, t_reset, used}
end
for i = 1, n do
  if tonumber(ARGV[3 * i + 1]) > 0 then
    redis.call('HINCRBY', KEYS[3 * i - 2], sec, 1)
    redis.call('EXPIRE', KEYS[3 * i - 2], 61)
  end
  if stream and tonumber(ARGV[3 * i + 3]) > 0 then
    redis.call('ZADD', KEYS[3 * i], now, ARGV[2])
    redis.call('PEXPIRE', KEYS[3 * i], lease_ms)
  end
end
if r_lim > 0 then r_rem, r_reset = r_rem - 1, (sec + 60) * 1000 - now end
return {1, 0, 0, 0, r_lim, r_rem, r_reset, t_lim, t_rem, t_reset, 0}
"""

# KEYS: per rule, its tokens hash and streams sorted set. ARGV: tokens, lease id, then per rule:
# tokens/min, streams.
_FINISH = """
local sec = tonumber(redis.call('TIME')[1])
local tokens = tonumber(ARGV[1])
for i = 1, #KEYS / 2 do
  if tokens > 0 and tonumber(ARGV[2 * i + 1]) > 0 then
    redis.call('HINCRBY', KEYS[2 * i - 1], sec, tokens)
    redis.call('EXPIRE', KEYS[2 * i - 1], 61)
  end
  if ARGV[2] ~= '' and tonumber(ARGV[2 * i + 2]) > 0 then
    redis.call('ZREM', KEYS[2 * i], ARGV[2])
  end
end
return 1
"""

_scripts: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()


def _scripts_for(client: Any) -> tuple[Any, Any]:
    scripts = _scripts.get(client)
    if scripts is None:
        scripts = _scripts[client] = (client.register_script(_ADMIT), client.register_script(_FINISH))
    return scripts


def _keys(organization: str, rule: RateRule) -> tuple[str, str, str]:
    base = f"rl:{{{organization}}}:{rule[0]}:{rule[1]}"
    return f"{base}:r", f"{base}:t", f"{base}:s"


# --- Admission ------------------------------------------------------------------------------------


class Admission:
    """An admitted request. `headers` go on the answer; `finish` must be called once when it ends."""

    __slots__ = ("_budgets", "_finished", "_lease", "_organization", "_organization_id", "_rules", "headers")

    def __init__(
        self,
        headers: dict[str, str],
        rules: tuple[RateRule, ...] = (),
        organization: str = "",
        lease: str = "",
        spending: tuple[Budget, ...] = (),
        organization_id: int = 0,
    ) -> None:
        self.headers = headers
        self._rules = rules
        self._organization = organization
        self._lease = lease
        self._budgets = spending
        self._organization_id = organization_id
        self._finished = not rules and not spending

    def finish_soon(self, *, total_tokens: int, cost_nanos: int = 0) -> None:
        """`finish` from sync code running on the event loop (the usage record): its own task."""
        if self._finished:
            return
        try:
            work = self.finish(total_tokens=total_tokens, cost_nanos=cost_nanos)
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no loop: nothing async can run here; the lease times out instead
            return
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    async def finish(self, *, total_tokens: int, cost_nanos: int = 0) -> None:
        """Count the tokens and the cost the request used and give back its stream slot.
        Idempotent; never raises."""
        if self._finished:
            return
        self._finished = True
        if self._budgets and cost_nanos > 0:
            await budgets.spend(self._organization_id, self._organization, self._budgets, cost_nanos)
        counted = [rule for rule in self._rules if rule[3] > 0 or (self._lease and rule[4] > 0)]
        if not counted:
            return
        client = async_client()
        if client is None:
            _local.finish(counted, total_tokens, self._lease)
            return
        keys: list[str] = []
        args: list[Any] = [max(int(total_tokens), 0), self._lease]
        for rule in counted:
            _, tokens, streams = _keys(self._organization, rule)
            keys += [tokens, streams]
            args += [rule[3], rule[4]]
        try:
            await _scripts_for(client)[1](keys=keys, args=args)
        except Exception:
            logger.warning("rate limit usage could not be recorded", exc_info=True)


UNLIMITED = Admission(headers={})
_pending: set[asyncio.Task[None]] = set()


async def drain() -> None:
    """Wait for the `finish_soon` work of this loop: for a loop that stops between runs (a
    Celery task's), so its token usage is counted now rather than when the loop runs again."""
    loop = asyncio.get_running_loop()
    waiting = [task for task in _pending if task.get_loop() is loop]
    if waiting:
        await asyncio.gather(*waiting, return_exceptions=True)


def _applicable(principal: Principal, model: str) -> tuple[RateRule, ...]:
    return tuple(rule for rule in principal.rate_limits if rule[1] == _ALL or rule[1] == model)


async def admit(principal: Principal, *, model: str, stream: bool) -> Admission:
    """Admit one request or raise RateLimited (429: rate_limit_exceeded with Retry-After and
    x-ratelimit-* headers, or insufficient_quota once a monthly budget is spent)."""
    spending = principal.budgets
    if not principal.rate_limits and not spending:
        return UNLIMITED
    organization = principal.organization_public_id
    if spending:
        await budgets.check(organization, spending)
    rules = _applicable(principal, model)
    if not rules:
        return (
            Admission({}, (), organization, "", spending, principal.organization_id)
            if spending
            else UNLIMITED
        )
    lease = secrets.token_hex(8) if stream and any(rule[4] > 0 for rule in rules) else ""
    result = await _evaluate(organization, rules, lease)
    if result is None:
        return (
            Admission({}, (), organization, "", spending, principal.organization_id)
            if spending
            else UNLIMITED
        )
    headers = _headers(result)
    if not result[0]:
        raise _refusal(principal, model, rules, result, headers)
    return Admission(headers, rules, organization, lease, spending, principal.organization_id)


async def _evaluate(organization: str, rules: tuple[RateRule, ...], lease: str) -> list[int] | None:
    """Check every rule and count the request if all pass (the admit script's answer); None if
    Redis failed, and the request is then admitted."""
    client = async_client()
    if client is None:
        return _local.admit(rules, stream=bool(lease), lease=lease)
    keys: list[str] = []
    args: list[Any] = ["1" if lease else "0", lease, settings.RATE_LIMIT_STREAM_LEASE_SECONDS * 1000]
    for rule in rules:
        keys += _keys(organization, rule)
        args += [rule[2], rule[3], rule[4]]
    try:
        return [int(value) for value in await _scripts_for(client)[0](keys=keys, args=args)]
    except Exception:
        logger.warning("rate limits could not be checked; request admitted", exc_info=True)
        return None


# --- Tool calls ------------------------------------------------------------------------------------

# The pseudo-model of tool-call counters, and the model name of a project rate limit that sets
# the project's own tool-call figure (its max_requests_per_1_minute).
TOOL_CALLS = "tool_calls"


def _tool_rules(principal: Principal) -> tuple[RateRule, ...]:
    rules: list[RateRule] = []
    if principal.project_id is not None:
        scope = f"p{principal.project_id}"
        per_project = operators = settings.TOOL_CALLS_PER_MINUTE_PER_PROJECT
        own = next(
            (rule[2] for rule in principal.rate_limits if rule[0] == scope and rule[1] == TOOL_CALLS), 0
        )
        if own > 0:
            # A project may tighten the operator's figure, never loosen it: the credit is the operator's.
            per_project = min(own, operators) if operators > 0 else own
        if per_project > 0:
            rules.append((scope, TOOL_CALLS, per_project, 0, 0))
    if principal.api_key_id is not None and settings.TOOL_CALLS_PER_MINUTE_PER_KEY > 0:
        rules.append((f"k{principal.api_key_id}", TOOL_CALLS, settings.TOOL_CALLS_PER_MINUTE_PER_KEY, 0, 0))
    return tuple(rules)


async def admit_tool_call(principal: Principal, *, tool: str) -> None:
    """Count one call of a tool that spends the operator's credit, or raise RateLimited."""
    rules = _tool_rules(principal)
    if not rules:
        return
    result = await _evaluate(principal.organization_public_id, rules, "")
    if result is not None and not result[0]:
        raise _refusal(principal, tool, rules, result, _headers(result), tool_call=True)


def _duration(ms: int) -> str:
    """OpenAI's reset format: `20ms`, `1.5s`, `6m0s`."""
    ms = max(ms, 0)
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s"


def _headers(result: list[int]) -> dict[str, str]:
    _, _, _, _, r_limit, r_remaining, r_reset, t_limit, t_remaining, t_reset, _ = result
    headers: dict[str, str] = {}
    if r_limit > 0:
        headers["x-ratelimit-limit-requests"] = str(r_limit)
        headers["x-ratelimit-remaining-requests"] = str(max(r_remaining, 0))
        headers["x-ratelimit-reset-requests"] = _duration(r_reset)
    if t_limit > 0:
        headers["x-ratelimit-limit-tokens"] = str(t_limit)
        headers["x-ratelimit-remaining-tokens"] = str(max(t_remaining, 0))
        headers["x-ratelimit-reset-tokens"] = _duration(t_reset)
    return headers


def _refusal(
    principal: Principal,
    model: str,
    rules: tuple[RateRule, ...],
    result: list[int],
    headers: dict[str, str],
    *,
    tool_call: bool = False,
) -> RateLimited:
    kind, index, retry_ms, used = result[1], result[2], result[3], result[10]
    rule = rules[index - 1]
    limit = rule[2] if kind == 1 else rule[3] if kind == 2 else rule[4]
    metrics.rate_limited(TOOL_CALLS if tool_call else _KIND[kind])
    where = (
        "this API key"
        if rule[0].startswith("k")
        else f"project {principal.project_public_id}"
        + ("" if rule[1] in (_ALL, TOOL_CALLS) else f" on model {model}")
    )
    wait = _duration(retry_ms)
    what = f"tool calls per min ({model} is one)" if tool_call else _NAMES[kind]
    message = (
        f"Rate limit reached for {what} in {where}: Limit {limit}, "
        + (f"Used {used}, Requested 1. " if kind != 2 else f"Used {used}. ")
        + f"Please try again in {wait}."
    )
    retry_after = str(max(1, math.ceil(retry_ms / 1000)))
    return RateLimited(message, headers={"Retry-After": retry_after, **headers})


# --- Without Redis: the same algorithm in process memory ----------------------------------------


class _LocalLimits:
    """Per-process fallback for the embedded mode (no REDIS_URL): limits hold per worker only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[int, int]] = {}
        self._leases: dict[str, dict[str, float]] = {}

    def _window(self, key: str, limit: int, sec: int, now_ms: int) -> tuple[int, int, int]:
        buckets = self._buckets.setdefault(key, {})
        for stale in [s for s in buckets if s < sec - (WINDOW_SECONDS - 1)]:
            del buckets[stale]
        ordered = sorted(buckets.items())
        total = sum(count for _, count in ordered)
        reset = (ordered[-1][0] + WINDOW_SECONDS) * 1000 - now_ms if ordered else 0
        retry = 0
        if total >= limit:
            left = total
            for second, count in ordered:
                left -= count
                if left < limit:
                    retry = (second + WINDOW_SECONDS) * 1000 - now_ms
                    break
        return total, retry, reset

    def admit(self, rules: tuple[RateRule, ...], *, stream: bool, lease: str) -> list[int]:
        # Keys without the organization: locally the scope (key or project pk) is already unique.
        now = time.time()
        sec, now_ms = int(now), int(now * 1000)
        lease_seconds = settings.RATE_LIMIT_STREAM_LEASE_SECONDS
        r_lim = r_rem = r_reset = t_lim = t_rem = t_reset = -1
        kind = index = retry = used = 0
        with self._lock:
            for position, rule in enumerate(rules, start=1):
                requests_key, tokens_key, streams_key = _keys("", rule)
                _, _, rpm, tpm, max_streams = rule
                if rpm > 0:
                    total, wait, reset = self._window(requests_key, rpm, sec, now_ms)
                    if r_rem < 0 or rpm - total < r_rem:
                        r_lim, r_rem, r_reset = rpm, rpm - total, reset
                    if total >= rpm and wait >= retry:
                        kind, index, retry, used = 1, position, wait, total
                if tpm > 0:
                    total, wait, reset = self._window(tokens_key, tpm, sec, now_ms)
                    if t_rem < 0 or max(tpm - total, 0) < t_rem:
                        t_lim, t_rem, t_reset = tpm, max(tpm - total, 0), reset
                    if total >= tpm and wait >= retry:
                        kind, index, retry, used = 2, position, wait, total
                if stream and max_streams > 0:
                    leases = self._leases.setdefault(streams_key, {})
                    for stale in [k for k, started in leases.items() if started < now - lease_seconds]:
                        del leases[stale]
                    if len(leases) >= max_streams and kind == 0:
                        kind, index, retry, used = 3, position, 1000, len(leases)
            if kind:
                return [0, kind, index, retry, r_lim, max(r_rem, 0), r_reset, t_lim, t_rem, t_reset, used]
            for rule in rules:
                requests_key, _, streams_key = _keys("", rule)
                if rule[2] > 0:
                    bucket = self._buckets.setdefault(requests_key, {})
                    bucket[sec] = bucket.get(sec, 0) + 1
                if stream and rule[4] > 0:
                    self._leases.setdefault(streams_key, {})[lease] = now
        if r_lim > 0:
            r_rem, r_reset = r_rem - 1, (sec + WINDOW_SECONDS) * 1000 - now_ms
        return [1, 0, 0, 0, r_lim, r_rem, r_reset, t_lim, t_rem, t_reset, 0]

    def finish(self, rules: list[RateRule], tokens: int, lease: str) -> None:
        sec = int(time.time())
        with self._lock:
            for rule in rules:
                _, tokens_key, streams_key = _keys("", rule)
                if tokens > 0 and rule[3] > 0:
                    bucket = self._buckets.setdefault(tokens_key, {})
                    bucket[sec] = bucket.get(sec, 0) + tokens
                if lease and rule[4] > 0:
                    self._leases.get(streams_key, {}).pop(lease, None)

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._leases.clear()


_local = _LocalLimits()
