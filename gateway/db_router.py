"""Primary/replica routing that never shows a client a replica older than its own writes.

Writes go to the primary. A read goes to a replica only when that replica has replayed the
primary's write-ahead log at least as far as every write the reader must see (the design of
GitLab's database load balancer):

- After a transaction that wrote commits, the primary's WAL insert position (an LSN) is stored
  in Redis under each principal the work belongs to: the user, the API key and the organization
  of the request (bound by authentication), plus the users, keys and organizations of the rows it
  saved (a guest login's new user has no principal yet, but the row names it). Every write also
  raises a global position, and a write outside any request or task raises the "unscoped" one.
- A later read, on any worker, takes the highest position of its principals and uses a replica
  whose `pg_last_wal_replay_lsn()` has reached it, else the primary. When replicas are current
  this costs one Redis MGET per request and nothing on the primary.
- Authentication and authorization reads (`authoritative()`: key lookups, JWT users, memberships,
  rate-limit rules) must see every write there is, so a revocation is never read back as active:
  they use a replica only when it has replayed the global position.
- Reads inside a transaction, after a write in the same request, or while Redis cannot be
  asked, go to the primary. Reads outside any request or task (shell, commands) wait for every
  write, as authorization reads do.
- A replica whose lag passes DB_REPLICA_MAX_LAG_SECONDS, or that cannot be reached, is skipped
  until a later probe finds it back and current. Probes run in the background
  (`ReplicaMonitor`); a replica whose connection fails hands that request to the primary
  (gateway.replica_backend).
- Celery tasks carry the enqueuer's position and principals in their headers (gateway.celery).

The positions are recorded by the primary's backend (gateway.primary_backend) after each commit
that wrote. Without replicas (the embedded SQLite default, or no DB_POSTGRESQL_READ*_DSN) every
query goes to the primary and nothing here runs: no LSN query, no Redis.

Stored positions expire after `_sticky_seconds()`, well past the lag bound: a replica still in
rotation by then has replayed the write.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.signals import post_delete, post_save
from prometheus_client import Counter, Gauge

from gateway import context

logger = logging.getLogger(__name__)

_KEY_PREFIX = "db:lsn:"
SCOPE_ALL = "all"  # every write: what authorization reads must see
SCOPE_UNSCOPED = "unscoped"  # writes outside a request or task (shell, management commands, tests)

REPLICA_LAG = Gauge(
    "gateway_db_replica_lag_seconds",
    "Replication lag of each read replica at its last probe (-1: unreachable).",
    ["replica"],
    multiprocess_mode="max",
)
PRIMARY_FALLBACK_READS = Counter(
    "gateway_db_primary_fallback_reads",
    "Reads that could have gone to a replica but went to the primary, by reason.",
    ["reason"],
)

# Set while authentication or authorization reads run (see `authoritative`).
_authoritative: ContextVar[bool] = ContextVar("gateway_db_authoritative", default=False)


# --- LSNs ----------------------------------------------------------------------------------


def lsn_parse(text: str | None) -> int | None:
    """PostgreSQL's `X/Y` pg_lsn text as one comparable integer."""
    if not text:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def lsn_format(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def replicas_enabled() -> bool:
    return bool(settings.DATABASE_REPLICAS) and bool(settings.DATABASE_READ_FROM_REPLICAS)


def _sticky_seconds() -> int:
    return max(30, int(3 * float(settings.DB_REPLICA_MAX_LAG_SECONDS)) + 5)


# --- Redis: positions per scope ---------------------------------------------------------------

# Raise each key to the new position, never lower it (a slower writer may record an older one).
_RAISE_SCRIPT = """
for _, key in ipairs(KEYS) do
  local current = tonumber(redis.call('GET', key) or '0')
  if current < tonumber(ARGV[1]) then
    redis.call('SET', key, ARGV[1], 'EX', tonumber(ARGV[2]))
  end
end
return 1
"""

_redis_down_until = 0.0
_REDIS_RETRY_SECONDS = 1.0


def _redis() -> Any:
    from gateway.redis import sync_client

    if time.monotonic() < _redis_down_until:
        return None
    return sync_client()


def _redis_failed(action: str) -> None:
    global _redis_down_until
    _redis_down_until = time.monotonic() + _REDIS_RETRY_SECONDS
    logger.warning("replica routing: Redis unavailable (%s); reads go to the primary", action, exc_info=True)


def _positions_store(scopes: Iterable[str], lsn: int) -> None:
    client = _redis()
    keys = [_KEY_PREFIX + scope for scope in sorted(set(scopes))]
    if client is None or not keys:
        if settings.REDIS_URL:
            _positions_lost()
        return
    try:
        _raise_script(client)(keys=keys, args=[lsn, _sticky_seconds()])
    except Exception:
        _redis_failed("store")
        _positions_lost()


_scripts: dict[int, Any] = {}


def _raise_script(client: Any) -> Any:
    """The script registered once per client: later calls send its SHA, not its text."""
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts[id(client)] = client.register_script(_RAISE_SCRIPT)
    return script


def _positions_lost() -> None:
    """A write position could not be stored: this process reads the primary until Redis is back
    (other processes cannot fetch positions either and do the same)."""
    global _redis_down_until
    _redis_down_until = max(_redis_down_until, time.monotonic() + _REDIS_RETRY_SECONDS)


class _Unknown(Exception):
    """The positions could not be read: nothing proves a replica current."""


def _positions_max(scopes: Iterable[str]) -> int:
    if not settings.REDIS_URL:
        # One process, no Redis (tests on PostgreSQL without Redis): positions live here.
        return max((_local_positions.get(scope, 0) for scope in scopes), default=0)
    client = _redis()
    if client is None:
        raise _Unknown
    keys = [_KEY_PREFIX + scope for scope in scopes]
    try:
        values = client.mget(keys)
    except Exception:
        _redis_failed("read")
        raise _Unknown from None
    return max((int(value) for value in values if value is not None), default=0)


_local_positions: dict[str, int] = {}


def _positions_store_local(scopes: Iterable[str], lsn: int) -> None:
    for scope in scopes:
        if _local_positions.get(scope, 0) < lsn:
            _local_positions[scope] = lsn


# --- Replica health and replay position, probed per process ---------------------------------


@dataclass(frozen=True)
class ReplicaStatus:
    alias: str
    online: bool
    replay_lsn: int | None
    lag_seconds: float | None
    checked_at: float  # time.monotonic()
    error: str | None = None

    @property
    def in_rotation(self) -> bool:
        return (
            self.online
            and self.lag_seconds is not None
            and self.lag_seconds <= float(settings.DB_REPLICA_MAX_LAG_SECONDS)
        )


# Lag: 0 while the replica has applied everything it received; otherwise the age of the last
# transaction it applied. A server that is not in recovery (a DSN naming the primary itself)
# is as current as the primary.
PROBE_SQL = """
SELECT
  CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END::text,
  CASE
    WHEN NOT pg_is_in_recovery() THEN 0
    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
    ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
  END::float8
"""


class ReplicaMonitor:
    """Each replica's replay position and lag, as this process last probed them.

    Probes run in a background thread, one at a time per replica, so a replica that hangs never
    holds up a request; a reading that stops being renewed takes the replica out of rotation.
    They use their own connection per replica (not the pool the queries use) with a short
    connect timeout (libpq's floor is 2 s) and statement timeout.
    """

    def __init__(self) -> None:
        self._status: dict[str, ReplicaStatus] = {}
        self._connections: dict[str, Any] = {}
        self._probing: set[str] = set()
        self._guard = threading.Lock()

    def cached(self, alias: str) -> ReplicaStatus | None:
        return self._status.get(alias)

    def status(self, alias: str, *, max_age: float) -> ReplicaStatus | None:
        """What is known, never waiting: a reading older than `max_age` starts a probe in the
        background and the caller decides on the reading it has (the next one gets the new).
        A replay position only moves forward, so an old reading errs towards the primary."""
        status = self._status.get(alias)
        if status is None or time.monotonic() - status.checked_at > max_age:
            self._probe_soon(alias)
        return status

    def _probe_soon(self, alias: str) -> None:
        with self._guard:
            if alias in self._probing:
                return
            self._probing.add(alias)
        threading.Thread(
            target=self._probe_once, args=(alias,), name=f"replica-probe-{alias}", daemon=True
        ).start()

    def _probe_once(self, alias: str) -> None:
        try:
            self.probe(alias)
        finally:
            with self._guard:
                self._probing.discard(alias)

    def probe(self, alias: str, *, timeout: float | None = None) -> ReplicaStatus:
        timeout = float(settings.DB_REPLICA_PROBE_TIMEOUT_SECONDS) if timeout is None else timeout
        try:
            connection = self._connection(alias, timeout)
            with connection.cursor() as cursor:
                cursor.execute(PROBE_SQL, prepare=False)
                row = cursor.fetchone()
            status = ReplicaStatus(alias, True, lsn_parse(row[0]), float(row[1]), time.monotonic())
        except Exception as exc:
            self._drop_connection(alias)
            # The exception's class only: connection errors can carry the DSN and its password.
            status = ReplicaStatus(alias, False, None, None, time.monotonic(), type(exc).__name__)
        self.remember(status)
        return status

    def remember(self, status: ReplicaStatus) -> None:
        previous = self._status.get(status.alias)
        self._status[status.alias] = status
        REPLICA_LAG.labels(status.alias).set(status.lag_seconds if status.lag_seconds is not None else -1.0)
        if previous is not None and previous.in_rotation != status.in_rotation:
            logger.warning(
                "read replica %s %s",
                status.alias,
                "back in rotation" if status.in_rotation else "out of rotation",
                extra={"replica": status.alias, "lag_seconds": status.lag_seconds, "error": status.error},
            )

    def mark_unreachable(self, alias: str, error: str) -> None:
        self._drop_connection(alias)
        self.remember(ReplicaStatus(alias, False, None, None, time.monotonic(), error))

    def _connection(self, alias: str, timeout: float) -> Any:
        connection = self._connections.get(alias)
        if connection is not None and not connection.closed:
            return connection
        import psycopg

        params = libpq_params(alias)
        milliseconds = max(1, int(timeout * 1000))
        connection = psycopg.connect(
            **params,
            autocommit=True,
            connect_timeout=max(1, int(timeout + 0.999)),
            options=f"-c statement_timeout={milliseconds}",
        )
        self._connections[alias] = connection
        return connection

    def _drop_connection(self, alias: str) -> None:
        connection = self._connections.pop(alias, None)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def close(self) -> None:
        for alias in list(self._connections):
            self._drop_connection(alias)
        self._status.clear()


def libpq_params(alias: str) -> dict[str, Any]:
    """Connection parameters of an alias as Django resolved them (tests rename the database)."""
    settings_dict = connections[alias].settings_dict
    params: dict[str, Any] = {
        key: value
        for key, value in settings_dict.get("OPTIONS", {}).items()
        if key not in {"pool", "server_side_binding", "assume_role", "isolation_level", "connect_timeout"}
    }
    params["dbname"] = settings_dict["NAME"]
    for name, key in (("USER", "user"), ("PASSWORD", "password"), ("HOST", "host"), ("PORT", "port")):
        if settings_dict.get(name):
            params[key] = settings_dict[name]
    return params


monitor = ReplicaMonitor()


def _usable(status: ReplicaStatus | None, status_seconds: float) -> bool:
    """In rotation by a reading recent enough to trust (probes that stopped coming back mean a
    replica that hangs)."""
    if status is None or not status.in_rotation:
        return False
    stale_after = status_seconds + float(settings.DB_REPLICA_PROBE_TIMEOUT_SECONDS) + 2.0
    return time.monotonic() - status.checked_at <= stale_after


def _pick_replica(required: int, *, reason_if_behind: str) -> str | None:
    """A replica in rotation that has replayed `required`, else None (read the primary)."""
    replicas = list(settings.DATABASE_REPLICAS)
    random.shuffle(replicas)
    status_seconds = float(settings.DB_REPLICA_STATUS_SECONDS)
    lsn_seconds = float(settings.DB_REPLICA_LSN_CACHE_SECONDS)
    any_in_rotation = False
    for alias in replicas:
        status = monitor.status(alias, max_age=status_seconds)
        if status is None or not _usable(status, status_seconds):
            continue
        any_in_rotation = True
        if status.replay_lsn is not None and status.replay_lsn >= required:
            return alias
        # Behind this reading: have the replica asked again soon, unless it was just asked.
        monitor.status(alias, max_age=lsn_seconds)
    PRIMARY_FALLBACK_READS.labels(reason_if_behind if any_in_rotation else "no_replica_in_rotation").inc()
    return None


# --- Per-request routing state ---------------------------------------------------------------


def _db_state(create: bool = False) -> dict[str, Any] | None:
    state = context.current()
    if state is None:
        return None
    db: dict[str, Any] | None = state.get("db")
    if db is None and create:
        db = state["db"] = {"scopes": set(), "wrote": False}
    return db


def principal_bind(*, user_id: int | None, api_key_id: int | None, organization_id: int | None) -> None:
    """Tie this request's reads and writes to its principal (called once authentication knows it)."""
    if not replicas_enabled():
        return
    db = _db_state(create=True)
    if db is None:
        return
    db["scopes"].update(_scopes(user_id=user_id, api_key_id=api_key_id, organization_id=organization_id))
    db.pop("required", None)  # the positions to wait for changed
    db.pop("choice", None)


def _scopes(*, user_id: Any = None, api_key_id: Any = None, organization_id: Any = None) -> set[str]:
    scopes = set()
    if user_id is not None:
        scopes.add(f"user:{user_id}")
    if api_key_id is not None:
        scopes.add(f"key:{api_key_id}")
    if organization_id is not None:
        scopes.add(f"org:{organization_id}")
    return scopes


def carried_state() -> dict[str, Any] | None:
    """What a Celery task enqueued now must see: the principals and the position to wait for."""
    if not replicas_enabled():
        return None
    db = _db_state()
    if db is None:
        return None
    lsn = max(int(db.get("last_write_lsn") or 0), int(db.get("required") or 0))
    return {"lsn": lsn, "scopes": sorted(db["scopes"])}


def carried_state_adopt(carried: dict[str, Any] | None) -> None:
    """In a task: read nothing older than what the enqueuer saw or wrote. A task that carries
    nothing (scheduled by beat, or enqueued outside a request) reads like a script: it waits
    for every write."""
    if not carried or not isinstance(carried, dict):
        return
    db = _db_state(create=True)
    if db is None:
        return
    db["scopes"].update(str(scope) for scope in carried.get("scopes", ()))
    db["floor"] = max(int(db.get("floor") or 0), int(carried.get("lsn") or 0))
    db.pop("required", None)
    db.pop("choice", None)


@contextlib.contextmanager
def authoritative() -> Iterator[None]:
    """Reads in this block decide who may do what: a replica serves them only once it has
    replayed every write recorded anywhere, so a revoked key or removed member is never read back."""
    token = _authoritative.set(True)
    try:
        yield
    finally:
        _authoritative.reset(token)


def _required_for_request(db: dict[str, Any] | None) -> int:
    if db is None:
        # Outside requests and tasks (shell, commands, tests): see every write.
        return _positions_max((SCOPE_ALL,))
    if "required" not in db:
        scopes = set(db["scopes"]) | {SCOPE_UNSCOPED}
        db["required"] = max(_positions_max(scopes), int(db.get("floor") or 0))
    return int(db["required"])


# --- Recording writes ---------------------------------------------------------------------------


def record_write(extra_scopes: Iterable[str] = ()) -> None:
    """After a commit: store the primary's WAL position under every scope the write belongs to
    (called by gateway.primary_backend)."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_insert_lsn()::text")
            lsn = lsn_parse(cursor.fetchone()[0])
    except Exception:
        logger.warning("replica routing: primary WAL position unavailable", exc_info=True)
        _positions_lost()
        return
    if lsn is None:
        return
    db = _db_state()
    scopes = {SCOPE_ALL, *extra_scopes}
    if db is None:
        scopes.add(SCOPE_UNSCOPED)
    else:
        scopes |= db["scopes"] | db.pop("touched", set())
        db["last_write_lsn"] = max(int(db.get("last_write_lsn") or 0), lsn)
    if settings.REDIS_URL:
        _positions_store(scopes, lsn)
    else:
        _positions_store_local(scopes, lsn)


def _row_scopes(instance: Any) -> set[str]:
    """The principals a saved row names: a new user, key or organization, or a row that belongs
    to one (a membership, a refresh token), so their first requests see it."""
    # By model label: the gateway sits below the apps and imports none of them.
    scopes = set()
    label = instance._meta.label_lower
    if label == settings.AUTH_USER_MODEL.lower():
        scopes |= _scopes(user_id=instance.pk)
    elif label == "organizations.organization":
        scopes |= _scopes(organization_id=instance.pk)
    elif label == "organizations.apikey":
        scopes |= _scopes(api_key_id=instance.pk)
    for field, kind in (
        ("organization_id", "organization_id"),
        ("user_id", "user_id"),
        ("owner_user_id", "user_id"),
    ):
        value = getattr(instance, field, None)
        if isinstance(value, int):
            scopes |= _scopes(**{kind: value})
    return scopes


def _row_written(sender: Any, instance: Any, **kwargs: Any) -> None:
    if not replicas_enabled() or kwargs.get("raw"):
        return
    using = kwargs.get("using") or DEFAULT_DB_ALIAS
    if using != DEFAULT_DB_ALIAS:
        return
    scopes = _row_scopes(instance)
    if not scopes:
        return
    db = _db_state(create=True)
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.in_atomic_block:
        if db is not None:
            db.setdefault("touched", set()).update(scopes)
        # Outside a context the commit hook records under "unscoped", which covers these rows.
    elif db is not None and hasattr(connection, "gateway_write_pending"):
        record_write(scopes)  # autocommit: the row is already committed


def connect_signals() -> None:
    post_save.connect(_row_written, dispatch_uid="gateway.db_router.post_save")
    post_delete.connect(_row_written, dispatch_uid="gateway.db_router.post_delete")


# --- The router ---------------------------------------------------------------------------------


class PrimaryReplicaRouter:
    def db_for_read(self, model: type[Any], **hints: Any) -> str:
        if not replicas_enabled():
            return DEFAULT_DB_ALIAS
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return DEFAULT_DB_ALIAS  # the transaction's own writes are only on the primary
        db = _db_state()
        if db is not None and db.get("wrote"):
            return DEFAULT_DB_ALIAS
        try:
            if _authoritative.get():
                # The global position is at least every other one; a task's floor may be newer.
                required = max(_positions_max((SCOPE_ALL,)), int((db or {}).get("floor") or 0))
                return _pick_replica(required, reason_if_behind="authorization") or DEFAULT_DB_ALIAS
            if db is not None and db.get("choice"):
                return str(db["choice"])
            alias = _pick_replica(_required_for_request(db), reason_if_behind="replica_behind")
        except _Unknown:
            PRIMARY_FALLBACK_READS.labels("positions_unknown").inc()
            return DEFAULT_DB_ALIAS
        if alias is None:
            return DEFAULT_DB_ALIAS
        if db is not None:
            db["choice"] = alias  # one replica per request: its reads agree with each other
        return alias

    def db_for_write(self, model: type[Any], **hints: Any) -> str:
        if replicas_enabled():
            db = _db_state(create=True)
            if db is not None:
                db["wrote"] = True
            primary = connections[DEFAULT_DB_ALIAS]
            if hasattr(primary, "gateway_write_pending"):  # gateway.primary_backend
                primary.gateway_write_pending = True
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # every alias holds the same data

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS


connect_signals()
