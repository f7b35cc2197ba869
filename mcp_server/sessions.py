"""Sessions, resource subscriptions and their cross-worker fan-out.

Web workers are stateless (any request may land on any worker of any replica), so nothing about a client lives in one process only:

- A 2025-11-25 client gets an `Mcp-Session-Id` from `initialize`. The id, the principal that
  owns it and the resources it subscribed to live in Redis, so the client's next POST, its GET
  stream and its DELETE may each land on a different worker.
- A subscribed conversation gaining an item is published on one Redis channel. Every worker
  listens to it and forwards the update to the streams it holds itself: legacy GET streams
  whose session watches that URI, and 2026-07-28 `subscriptions/listen` streams (through the
  SDK's in-process subscription bus, which filters by URI per stream).

Without REDIS_URL (the embedded single-process default) the same interfaces are kept in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import orjson
import redis.asyncio as aredis
from django.conf import settings
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated

from gateway.redis import async_client, sync_client

logger = logging.getLogger(__name__)
_LISTENER_STOP_SECONDS = 2.0

CHANNEL = "mcp:resource-updated"
# Server-to-client messages for one session's GET stream (log notifications), as
# {"session": id, "message": <JSON-RPC text>}: the stream may be open on another worker.
SESSION_CHANNEL = "mcp:session-message"
_PREFIX = "mcp:"


class SessionStore(Protocol):
    async def create(self, owner: str) -> str: ...
    async def owner(self, session_id: str) -> str | None: ...
    async def delete(self, session_id: str) -> None: ...
    async def subscribe(self, session_id: str, uri: str) -> None: ...
    async def unsubscribe(self, session_id: str, uri: str) -> None: ...
    async def watchers(self, uri: str) -> set[str]: ...


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _new_session_id() -> str:
    return secrets.token_hex(16)


class RedisSessionStore:
    """Keys (all with the session TTL, refreshed on use):
    `mcp:session:{sid}` → owner, `mcp:session:{sid}:subs` → URIs, `mcp:watch:{uri}` → session ids.
    A watcher set may name an expired session; delivery only reaches open streams, so a stale
    member costs one set lookup until its TTL runs out."""

    def _client(self) -> aredis.Redis:
        client = async_client()
        assert client is not None  # noqa: S101 -- chosen only when REDIS_URL is set
        return client

    @property
    def _ttl(self) -> int:
        return int(settings.MCP_SESSION_TTL_SECONDS)

    async def create(self, owner: str) -> str:
        session_id = _new_session_id()
        await self._client().set(f"{_PREFIX}session:{session_id}", owner, ex=self._ttl)
        return session_id

    async def owner(self, session_id: str) -> str | None:
        key = f"{_PREFIX}session:{session_id}"
        async with self._client().pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.expire(key, self._ttl)
            pipe.expire(f"{key}:subs", self._ttl)
            value, *_ = await pipe.execute()
        return _text(value) if value is not None else None

    async def delete(self, session_id: str) -> None:
        client = self._client()
        key = f"{_PREFIX}session:{session_id}"
        uris = await client.smembers(f"{key}:subs")
        async with client.pipeline(transaction=False) as pipe:
            for uri in uris:
                pipe.srem(f"{_PREFIX}watch:{_text(uri)}", session_id)
            pipe.delete(key, f"{key}:subs")
            await pipe.execute()

    async def subscribe(self, session_id: str, uri: str) -> None:
        key = f"{_PREFIX}session:{session_id}:subs"
        watch = f"{_PREFIX}watch:{uri}"
        async with self._client().pipeline(transaction=False) as pipe:
            pipe.sadd(key, uri)
            pipe.expire(key, self._ttl)
            pipe.sadd(watch, session_id)
            pipe.expire(watch, self._ttl)
            await pipe.execute()

    async def unsubscribe(self, session_id: str, uri: str) -> None:
        async with self._client().pipeline(transaction=False) as pipe:
            pipe.srem(f"{_PREFIX}session:{session_id}:subs", uri)
            pipe.srem(f"{_PREFIX}watch:{uri}", session_id)
            await pipe.execute()

    async def watchers(self, uri: str) -> set[str]:
        return {_text(member) for member in await self._client().smembers(f"{_PREFIX}watch:{uri}")}


class MemorySessionStore:
    """Single-process stand-in (no REDIS_URL). Sessions end with the process."""

    def __init__(self) -> None:
        self._owners: dict[str, str] = {}
        self._subs: dict[str, set[str]] = {}

    async def create(self, owner: str) -> str:
        session_id = _new_session_id()
        self._owners[session_id] = owner
        return session_id

    async def owner(self, session_id: str) -> str | None:
        return self._owners.get(session_id)

    async def delete(self, session_id: str) -> None:
        self._owners.pop(session_id, None)
        self._subs.pop(session_id, None)

    async def subscribe(self, session_id: str, uri: str) -> None:
        self._subs.setdefault(session_id, set()).add(uri)

    async def unsubscribe(self, session_id: str, uri: str) -> None:
        self._subs.get(session_id, set()).discard(uri)

    async def watchers(self, uri: str) -> set[str]:
        return {sid for sid, uris in self._subs.items() if uri in uris and sid in self._owners}


_memory_store = MemorySessionStore()


def session_store() -> SessionStore:
    return RedisSessionStore() if settings.REDIS_URL else _memory_store


def resource_updated_message(uri: str) -> bytes:
    """The JSON-RPC notification a legacy GET stream carries."""
    return orjson.dumps(
        {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}}
    )


class StreamLimitReached(Exception):
    """This worker holds MCP_MAX_STREAMS open event streams already."""


class Hub:
    """One per worker process and event loop: the streams this worker holds, and the listener
    that feeds them from the Redis channel."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # 2026-07-28 subscriptions/listen streams hear updates from this bus (filtered by URI).
        self.bus = InMemorySubscriptionBus()
        self._streams: dict[str, set[asyncio.Queue[bytes | None]]] = {}
        self._listener: asyncio.Task[None] | None = None
        # Set while the Redis listener is subscribed (always, without Redis: delivery is local),
        # so whoever must not publish into the void can wait for it rather than guess.
        self.listening = asyncio.Event()
        self._slots = 0

    # --- stream slots (both eras): long-lived, so each worker caps how many it holds -------

    def take_slot(self) -> None:
        if self._slots >= settings.MCP_MAX_STREAMS:
            raise StreamLimitReached
        self._slots += 1

    def give_slot(self) -> None:
        self._slots = max(0, self._slots - 1)

    # --- legacy GET streams -------------------------------------------------------------

    def open_stream(self, session_id: str) -> asyncio.Queue[bytes | None]:
        """Raises StreamLimitReached when this worker already holds MCP_MAX_STREAMS streams."""
        self.take_slot()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1000)
        self._streams.setdefault(session_id, set()).add(queue)
        return queue

    def close_stream(self, session_id: str, queue: asyncio.Queue[bytes | None]) -> None:
        queues = self._streams.get(session_id)
        if queues is not None and queue in queues:
            queues.discard(queue)
            self.give_slot()
            if not queues:
                del self._streams[session_id]

    def end_session(self, session_id: str) -> None:
        """A DELETEd session's streams on this worker end now (None is the end marker)."""
        for queue in self._streams.get(session_id, set()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    # --- delivery -----------------------------------------------------------------------

    async def deliver(self, uri: str) -> None:
        """Fan one update out to this worker's streams."""
        await self.bus.publish(ResourceUpdated(uri=uri))
        if not self._streams:
            return
        local = set(self._streams) & await session_store().watchers(uri)
        message = resource_updated_message(uri)
        for session_id in local:
            for queue in self._streams.get(session_id, set()):
                try:
                    queue.put_nowait(message)
                except asyncio.QueueFull:
                    logger.warning("mcp stream backlog full; dropping an update", extra={"uri": uri})

    def deliver_to_session(self, session_id: str, message: bytes) -> None:
        """Put one JSON-RPC message on this worker's GET streams of that session, if any."""
        for queue in self._streams.get(session_id, set()):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                logger.warning(
                    "mcp stream backlog full; dropping a message", extra={"mcp_session": session_id}
                )

    def start(self) -> None:
        if not settings.REDIS_URL:
            self.listening.set()
        elif self._listener is None:
            self._listener = self.loop.create_task(self._listen(), name="mcp-resource-listener")

    async def stop(self) -> None:
        for queues in list(self._streams.values()):
            for queue in queues:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)
        if self._listener is not None:
            self._listener.cancel()
            # Bounded: redis-py can swallow a cancellation that lands while it connects or
            # subscribes, and an unbounded await then hangs shutdown (seen in CI, 2 runs in 6).
            _, pending = await asyncio.wait({self._listener}, timeout=_LISTENER_STOP_SECONDS)
            if pending:
                logger.warning("mcp resource listener did not stop in time; leaving it behind")
            self._listener = None
        self.listening.clear()

    async def _listen(self) -> None:
        """Follow the Redis channel for the process's lifetime, reconnecting after failures."""
        delay = 0.5
        while True:
            # Its own connection without a read timeout: a quiet channel is not an error.
            client = aredis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=2, health_check_interval=30
            )
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL, SESSION_CHANNEL)
                    self.listening.set()
                    delay = 0.5
                    while True:
                        message = await pubsub.get_message(timeout=5.0)
                        if message is None or message.get("type") != "message":
                            continue
                        if _text(message["channel"]) == SESSION_CHANNEL:
                            self._deliver_published(message["data"])
                        else:
                            await self._safe_deliver(_text(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                self.listening.clear()
                logger.warning("mcp resource listener lost Redis; reconnecting", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                await client.aclose()

    def _deliver_published(self, data: bytes | str) -> None:
        try:
            envelope = orjson.loads(data)
            self.deliver_to_session(str(envelope["session"]), str(envelope["message"]).encode())
        except (orjson.JSONDecodeError, KeyError, TypeError):
            logger.warning("malformed mcp session message on the channel")

    async def _safe_deliver(self, uri: str) -> None:
        try:
            await self.deliver(uri)
        except Exception:
            logger.exception("mcp resource update delivery failed", extra={"uri": uri})


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}
_hubs_lock = threading.Lock()


def hub() -> Hub:
    """This loop's hub, started on first use (servers without lifespan start it here)."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        current = _hubs.get(loop)
        if current is None:
            for stale in [other for other in _hubs if other.is_closed()]:
                del _hubs[stale]
            current = _hubs[loop] = Hub(loop)
    current.start()
    return current


@contextlib.asynccontextmanager
async def hub_running() -> AsyncIterator[Hub]:
    current = hub()
    try:
        yield current
    finally:
        await current.stop()
        with _hubs_lock:
            _hubs.pop(current.loop, None)


def publish_resource_updated(uri: str) -> None:
    """Announce a changed resource to every worker. Sync: called from the ORM side (signals).

    Best effort: an update that cannot be published is logged, never raised into the write
    that caused it; subscribers refetch on their next read anyway.
    """
    client = sync_client()
    if client is not None:
        try:
            client.publish(CHANNEL, uri)
        except Exception:
            logger.warning("could not publish an MCP resource update", extra={"uri": uri}, exc_info=True)
        return
    with _hubs_lock:
        targets = list(_hubs.values())
    for target in targets:
        # A loop may close between the look and the call (tests, shutdown): nothing to tell it.
        with contextlib.suppress(RuntimeError):
            target.loop.call_soon_threadsafe(_schedule(target.deliver, uri))


_pending: set[asyncio.Future[Any]] = set()


def _schedule(fn: Callable[[str], Any], uri: str) -> Callable[[], None]:
    def run() -> None:
        future = asyncio.ensure_future(fn(uri))
        _pending.add(future)  # the loop keeps only weak references to tasks
        future.add_done_callback(_pending.discard)

    return run


async def send_to_session(session_id: str, message: dict[str, Any]) -> None:
    """Send a JSON-RPC message to a session's GET stream, wherever it is open. Best effort:
    a session without an open stream just misses it, as MCP allows for notifications."""
    text = orjson.dumps(message)
    client = async_client()
    if client is not None:
        try:
            await client.publish(
                SESSION_CHANNEL, orjson.dumps({"session": session_id, "message": text.decode()})
            )
        except Exception:
            logger.warning("could not publish an MCP session message", exc_info=True)
        return
    hub().deliver_to_session(session_id, text)
