"""The routing table survives the stores behind it failing: a reload that fails keeps the previous
table (the request is served, nothing escapes), and a dead Redis leaves the table in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from django.db import connection

from gateway import errors
from inference.models import Provider
from inference.registry import Registry, registry
from inference.tests.fake_upstream import FakeUpstream
from tests.live_server import LiveGateway, free_port

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def routing_table_unreadable() -> Iterator[None]:
    """The database stops answering the registry's query (its table is renamed away), as it does
    when PostgreSQL is down; every other table keeps working. Restored afterwards."""
    table = "inference_providermodel"
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")


def test_a_failed_reload_keeps_the_previous_table(
    live_gateway: LiveGateway, provider: Provider, project_key, request: pytest.FixtureRequest
) -> None:
    def chat() -> httpx.Response:
        return httpx.post(
            f"{live_gateway.url}/v1/chat/completions",
            json={"model": "fake-model", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {project_key[1]}"},
            timeout=15,
        )

    assert chat().status_code == 200  # the table is loaded
    request.getfixturevalue("routing_table_unreadable")
    registry.invalidate()  # the next request reloads, and the reload fails
    answer = chat()
    assert answer.status_code == 200, answer.text


def test_without_any_table_a_failed_load_is_a_503_envelope(
    provider: Provider, routing_table_unreadable: None
) -> None:
    fresh = Registry()  # a worker that just started
    with pytest.raises(errors.ServiceUnavailable) as caught:
        asyncio.run(fresh.routes_for("fake-model", 0, None))
    assert caught.value.status == 503
    assert caught.value.code == "registry_unavailable"


def test_a_dead_redis_leaves_the_table_in_memory(
    provider: Provider, upstream: FakeUpstream, settings
) -> None:
    settings.MODEL_REGISTRY_REFRESH_SECONDS = 0
    worker = Registry()
    routes, known = asyncio.run(worker.routes_for("fake-model", 0, None))  # loaded (Redis or not)
    assert known
    assert [route.provider_id for route in routes] == [provider.pk]
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    async def route_twice() -> list[list[int]]:
        # Each event loop gets its own Redis client: this one dials the dead address.
        found = []
        for _ in range(2):
            routes, _ = await worker.routes_for("fake-model", 0, None)
            found.append([route.provider_id for route in routes])
        return found

    assert asyncio.run(route_twice()) == [[provider.pk], [provider.pk]]


def test_health_polls_and_provider_changes_work_with_redis_down(upstream: FakeUpstream, settings) -> None:
    from gateway.redis import sync_client
    from inference import services

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    sync_client.cache_clear()
    try:
        provider = services.provider_create(name="p", base_url=upstream.base_url)  # bumps on commit
        checked = services.provider_check(provider_id=provider.pk, force=True)  # bumps again
        assert checked is not None
        assert checked.healthy
        assert checked.last_good_poll_at is not None
    finally:
        sync_client.cache_clear()
