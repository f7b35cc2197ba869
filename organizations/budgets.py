"""Monthly budgets per project and per API key, enforced in Redis next to the rate limits.

A budget's spend this month is one integer counter in Redis (`bg:{org}:<scope>:<YYYY-MM>`, in
billionths of BUDGET_CURRENCY), shared by every worker and replica. A call is admitted while the
spend of every budget that applies is below its hard limit, and its real cost is added when it
ends (`spend`), so calls already running when the limit is reached may take the spend a little
past it, as with token limits. The first call whose cost takes the spend to the soft limit sets a
once-a-month flag in the same script and queues the e-mail to the organization owners.

Without REDIS_URL the counters live in process memory, per worker. If Redis fails, calls are
admitted and a warning is logged: a broken counter store must not take the API down. If Redis
loses the counters (a restart without persistence, a flush, a failover to an empty replica),
beat's reconciliation (inference.spend) raises them back to what the month's usage rows show.
"""

from __future__ import annotations

import logging
import threading
import weakref
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings

from gateway import metrics
from gateway.background import fire_and_forget
from gateway.errors import RateLimited
from gateway.redis import async_client, sync_client
from organizations.keycache import Budget

logger = logging.getLogger(__name__)

NANOS = Decimal(1_000_000_000)
_COUNTER_TTL_SECONDS = 40 * 86400  # a month's counter outlives the month, then goes

# KEYS: per budget, its counter. ARGV: per budget, its hard limit. Returns the 1-based index of
# the first budget whose spend reached its hard limit, or 0.
_CHECK = """
for i = 1, #KEYS do
  local limit = tonumber(ARGV[i])
  if limit > 0 and tonumber(redis.call('GET', KEYS[i]) or '0') >= limit then return i end
end
return 0
"""

# KEYS: per budget, its counter and its soft-notice flag. ARGV: cost, TTL, then per budget its soft
# limit. Returns, per budget, 1 if this cost took the spend to the soft limit first this month.
_SPEND = """
local cost, ttl, crossed = tonumber(ARGV[1]), tonumber(ARGV[2]), {}
for i = 1, #KEYS / 2 do
  local spent = redis.call('INCRBY', KEYS[2 * i - 1], cost)
  redis.call('EXPIRE', KEYS[2 * i - 1], ttl)
  local soft = tonumber(ARGV[i + 2])
  crossed[i] = 0
  if soft > 0 and spent >= soft and redis.call('SET', KEYS[2 * i], '1', 'NX', 'EX', ttl) then
    crossed[i] = 1
  end
end
return crossed
"""

# KEYS: counters. ARGV: the TTL, then per counter the spend its usage rows show. Raises a counter
# that is below its rows' figure and returns how many were raised; never lowers one, since a
# counter is ahead of the rows still in a worker's buffer.
_RAISE = """
local ttl, raised = tonumber(ARGV[1]), 0
for i = 1, #KEYS do
  local recorded = tonumber(ARGV[i + 1])
  if tonumber(redis.call('GET', KEYS[i]) or '0') < recorded then
    redis.call('SET', KEYS[i], recorded, 'EX', ttl)
    raised = raised + 1
  end
end
return raised
"""

_scripts: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()


def _scripts_for(client: Any) -> tuple[Any, Any]:
    scripts = _scripts.get(client)
    if scripts is None:
        scripts = _scripts[client] = (client.register_script(_CHECK), client.register_script(_SPEND))
    return scripts


def month_now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m")


def to_nanos(amount: Decimal | None) -> int:
    return int(amount * NANOS) if amount else 0


def _counter(organization: str, scope: str, month: str) -> str:
    return f"bg:{{{organization}}}:{scope}:{month}"


def insufficient_quota() -> RateLimited:
    err = RateLimited(
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors.",
        code="insufficient_quota",
    )
    err.type = "insufficient_quota"  # OpenAI's type for this case; the SDK maps the 429 either way
    return err


async def check(organization: str, budgets: tuple[Budget, ...]) -> None:
    """Raise insufficient_quota (429) if a hard budget of the caller is spent this month."""
    hard = [budget for budget in budgets if budget[1] > 0]
    if not hard:
        return
    month = month_now()
    client = async_client()
    if client is None:
        refused = _local.check(organization, hard, month)
    else:
        try:
            refused = int(
                await _scripts_for(client)[0](
                    keys=[_counter(organization, b[0], month) for b in hard], args=[b[1] for b in hard]
                )
            )
        except Exception:
            logger.warning("budgets could not be checked; request admitted", exc_info=True)
            return
    if refused:
        metrics.rate_limited("budget")
        raise insufficient_quota()


async def spend(organization_id: int, organization: str, budgets: tuple[Budget, ...], nanos: int) -> None:
    """Add a finished call's cost to every budget that applies; queue the soft-limit e-mails whose
    threshold this call crossed. Never raises."""
    if nanos <= 0 or not budgets:
        return
    month = month_now()
    client = async_client()
    if client is None:
        crossed = _local.spend(organization, budgets, month, nanos)
    else:
        keys: list[str] = []
        for budget in budgets:
            counter = _counter(organization, budget[0], month)
            keys += [counter, counter + ":soft"]
        try:
            answer = await _scripts_for(client)[1](
                keys=keys, args=[nanos, _COUNTER_TTL_SECONDS, *(b[2] for b in budgets)]
            )
        except Exception:
            logger.warning("budget spend could not be recorded", exc_info=True)
            return
        crossed = [budget for budget, flag in zip(budgets, answer, strict=True) if int(flag)]
    for budget in crossed:
        _notify(organization_id, budget[0], month)


def _notify(organization_id: int, scope: str, month: str) -> None:
    # Off the event loop: queuing talks to the broker (and runs the task where tasks run eagerly).
    fire_and_forget(_enqueue, organization_id=organization_id, scope=scope, month=month)


def _enqueue(*, organization_id: int, scope: str, month: str) -> None:
    from organizations import tasks

    tasks.budget_soft_limit_notify.delay(organization_id, scope, month)


def counters_raise(month: str, recorded: dict[tuple[str, str], int]) -> int | None:
    """Raise the month's counters, {(organization public id, scope): nanos the usage rows show},
    to those figures where they are below them; how many were raised (None: no Redis, whose
    counters are each web process's own and out of reach here)."""
    client = sync_client()
    if client is None:
        return None
    if not recorded:
        return 0
    keys = [_counter(organization, scope, month) for organization, scope in recorded]
    return int(client.eval(_RAISE, len(keys), *keys, _COUNTER_TTL_SECONDS, *recorded.values()))


def spent_nanos(organization: str, scope: str) -> int | None:
    """This month's enforced spend of one budget, for the API and the admin (None: Redis failed)."""
    client = sync_client()
    if client is None:
        return _local.spent(organization, scope, month_now())
    try:
        raw = client.get(_counter(organization, scope, month_now()))
    except Exception:
        return None
    return int(raw or 0)


class _LocalBudgets:
    """Per-process counters for the embedded mode (no REDIS_URL)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent: dict[str, int] = {}
        self._notified: set[str] = set()

    def check(self, organization: str, budgets: list[Budget], month: str) -> int:
        with self._lock:
            for index, (scope, hard, _) in enumerate(budgets, start=1):
                if self._spent.get(_counter(organization, scope, month), 0) >= hard:
                    return index
        return 0

    def spend(self, organization: str, budgets: tuple[Budget, ...], month: str, nanos: int) -> list[Budget]:
        crossed: list[Budget] = []
        with self._lock:
            for budget in budgets:
                counter = _counter(organization, budget[0], month)
                self._spent[counter] = self._spent.get(counter, 0) + nanos
                if budget[2] > 0 and self._spent[counter] >= budget[2] and counter not in self._notified:
                    self._notified.add(counter)
                    crossed.append(budget)
        return crossed

    def spent(self, organization: str, scope: str, month: str) -> int:
        with self._lock:
            return self._spent.get(_counter(organization, scope, month), 0)

    def clear(self) -> None:
        with self._lock:
            self._spent.clear()
            self._notified.clear()


_local = _LocalBudgets()


def currency() -> str:
    return str(settings.BUDGET_CURRENCY)
