"""Session store and fan-out, on Redis and in memory, without an HTTP server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from mcp.server.subscriptions import ServerEvent

from gateway.redis import sync_client
from mcp_server import sessions

URI = "conversation://conv_sessions_test"


@pytest.fixture(params=["redis", "memory"])
def store_kind(request: pytest.FixtureRequest, settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    if request.param == "redis":
        if not settings.REDIS_URL:
            pytest.skip("REDIS_URL is not set")
    else:
        settings.REDIS_URL = ""
        sync_client.cache_clear()
    yield request.param
    sync_client.cache_clear()


async def test_store_lifecycle(store_kind: str) -> None:
    store = sessions.session_store()
    assert isinstance(
        store, sessions.RedisSessionStore if store_kind == "redis" else sessions.MemorySessionStore
    )
    first = await store.create("key:1:project:1")
    second = await store.create("key:2:project:2")
    assert first != second
    assert len(first) == 32
    assert await store.owner(first) == "key:1:project:1"
    assert await store.owner("0" * 32) is None

    await store.subscribe(first, URI)
    await store.subscribe(second, URI)
    assert await store.watchers(URI) >= {first, second}
    await store.unsubscribe(second, URI)
    assert second not in await store.watchers(URI)

    await store.delete(first)
    assert await store.owner(first) is None
    assert first not in await store.watchers(URI)


async def test_store_sessions_expire(settings) -> None:  # type: ignore[no-untyped-def]
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    settings.MCP_SESSION_TTL_SECONDS = 1
    store = sessions.RedisSessionStore()
    session = await store.create("key:9:project:9")
    await store.subscribe(session, URI)
    # Redis expires the keys after the TTL: poll the watchers (owner() would renew the session),
    # then the session, set before the subscription, must be gone too.
    async with asyncio.timeout(5):
        while session in await store.watchers(URI):  # noqa: ASYNC110 -- an expiry has no event to wait on
            await asyncio.sleep(0.05)
    assert await store.owner(session) is None


async def test_hub_delivers_to_subscribed_streams_and_listen_bus(store_kind: str) -> None:
    store = sessions.session_store()
    watching = await store.create("key:1:project:1")
    other = await store.create("key:1:project:1")
    await store.subscribe(watching, URI)
    async with sessions.hub_running() as hub:
        events: list[ServerEvent] = []
        unsubscribe = hub.bus.subscribe(events.append)
        subscribed = hub.open_stream(watching)
        unsubscribed = hub.open_stream(other)
        await hub.deliver(URI)
        message = subscribed.get_nowait()
        assert message == sessions.resource_updated_message(URI)
        assert b'"method":"notifications/resources/updated"' in (message or b"")
        assert unsubscribed.empty()
        assert [getattr(event, "uri", None) for event in events] == [URI]
        unsubscribe()
        hub.end_session(watching)
        assert subscribed.get_nowait() is None  # the end marker a DELETE sends
    await store.delete(watching)
    await store.delete(other)


async def test_publish_reaches_this_workers_streams(store_kind: str) -> None:
    """Redis: through the channel (as from another process). Memory: straight to the loop."""
    store = sessions.session_store()
    session = await store.create("key:1:project:1")
    await store.subscribe(session, URI)
    async with sessions.hub_running() as hub:
        queue = hub.open_stream(session)
        async with asyncio.timeout(5):
            await hub.listening.wait()
        # Published from a thread without a loop, like a signal receiver after an ORM commit.
        publisher = threading.Thread(target=sessions.publish_resource_updated, args=(URI,))
        publisher.start()
        publisher.join()
        async with asyncio.timeout(5):
            assert await queue.get() == sessions.resource_updated_message(URI)
    await store.delete(session)


async def test_each_worker_caps_its_open_streams(settings) -> None:  # type: ignore[no-untyped-def]
    settings.MCP_MAX_STREAMS = 2
    async with sessions.hub_running() as hub:
        first = hub.open_stream("s1")
        hub.take_slot()  # a subscriptions/listen stream counts too
        with pytest.raises(sessions.StreamLimitReached):
            hub.open_stream("s2")
        hub.close_stream("s1", first)
        hub.close_stream("s1", first)  # closing twice gives back one slot only
        second = hub.open_stream("s2")
        with pytest.raises(sessions.StreamLimitReached):
            hub.take_slot()
        hub.give_slot()
        hub.close_stream("s2", second)
        hub.open_stream("s3")
        hub.take_slot()
