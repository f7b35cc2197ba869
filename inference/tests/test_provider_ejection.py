"""Who takes a provider out of rotation (Envoy's outlier detection), through the live gateway:
several failures in a row across requests eject it from a worker, never the last live provider of
a model, a slow non-stream generation is the request's failure, and the health poll decides."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from django.db import close_old_connections, connection

from inference import services
from inference.models import Provider, UsageRecord
from inference.registry import Registry, registry
from inference.tests.fake_upstream import FakeUpstream
from organizations.tests.factories import make_api_key
from tests.fixtures import register
from tests.live_server import LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)

CRASH = b"please crash the model"
HELLO = [{"role": "user", "content": "Say hello"}]


def _chat(gateway: LiveGateway, key: str, *, content: str = "Say hello", **extra: object) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "shared-model", "messages": [{"role": "user", "content": content}], **extra},
        headers={"Authorization": f"Bearer {key}"},
        timeout=15,
    )


def _chats(upstream: FakeUpstream) -> int:
    return sum(1 for request in upstream.requests if request["path"] == "/v1/chat/completions")


def test_one_tenant_crashing_the_model_now_and_then_cannot_take_it_offline(
    live_gateway: LiveGateway, make_upstream
) -> None:
    upstream = make_upstream(["shared-model"])
    provider = register(upstream)
    upstream.crash_on = CRASH
    _, attacker = make_api_key()
    _, victim = make_api_key()  # another organization
    for _ in range(4):
        assert _chat(live_gateway, attacker, content=CRASH.decode()).status_code == 502
        answer = _chat(live_gateway, victim)
        assert answer.status_code == 200, answer.text
    provider.refresh_from_db()
    assert provider.healthy  # traffic never marks a provider down for everyone
    assert provider.consecutive_failures == 0


def test_the_last_provider_of_a_model_is_never_ejected(
    live_gateway: LiveGateway, make_upstream, settings
) -> None:
    settings.PROVIDER_EJECT_CONSECUTIVE_FAILURES = 2
    upstream = make_upstream(["shared-model"])
    register(upstream)
    upstream.crash_on = CRASH
    _, attacker = make_api_key()
    _, victim = make_api_key()
    for _ in range(10):  # five times the threshold, in a row
        assert _chat(live_gateway, attacker, content=CRASH.decode()).status_code == 502
    assert _chat(live_gateway, victim).status_code == 200
    assert _chats(upstream) == 11  # every request reached it: it never left the rotation


def test_failures_in_a_row_eject_a_provider_that_has_a_twin(
    live_gateway: LiveGateway, make_upstream, settings
) -> None:
    settings.PROVIDER_EJECT_CONSECUTIVE_FAILURES = 3
    broken, twin = make_upstream(["shared-model"]), make_upstream(["shared-model"])
    register(broken, name="broken")
    register(twin, name="twin")
    broken.behaviour["shared-model"] = "error_500"
    _, key = make_api_key()
    for _ in range(20):
        answer = _chat(live_gateway, key)
        assert answer.status_code == 200, answer.text  # the retry on the twin answers
    assert _chats(broken) == 3  # out after the third failure in a row, not before, not after
    # One success between failures resets the count: a well provider is not ejected by a caller
    # whose requests fail now and then.
    assert _chats(twin) == 20


def test_a_good_poll_ends_the_ejection_on_every_worker(
    live_gateway: LiveGateway, make_upstream, settings
) -> None:
    settings.PROVIDER_EJECT_CONSECUTIVE_FAILURES = 2
    settings.PROVIDER_EJECT_SECONDS = 300
    broken, twin = make_upstream(["shared-model"]), make_upstream(["shared-model"])
    broken_provider = register(broken, name="broken")
    register(twin, name="twin")
    broken.behaviour["shared-model"] = "error_500"
    _, key = make_api_key()
    other_worker = Registry()  # a second web worker's registry, ejecting on its own traffic

    async def other_worker_ejects() -> bool:
        await other_worker.routes_for("shared-model", 0, None)
        return other_worker.record_failure(broken_provider.pk) or other_worker.record_failure(
            broken_provider.pk
        )

    assert asyncio.run(other_worker_ejects())
    # The worker picks between the two at random: call until its second failure in a row there
    # (10 calls reached it fewer than twice about once in a hundred runs).
    for _ in range(60):
        assert _chat(live_gateway, key).status_code == 200
        if _chats(broken) >= 2:
            break
    assert _chats(broken) == 2
    for _ in range(10):
        assert _chat(live_gateway, key).status_code == 200
    assert _chats(broken) == 2  # out of this worker's rotation
    broken.behaviour.clear()  # repaired
    services.provider_check(provider_id=broken_provider.pk, force=True)
    for _ in range(20):
        assert _chat(live_gateway, key).status_code == 200
    assert _chats(broken) > 2  # back in this worker's rotation long before 300 s

    async def other_worker_routes() -> set[int]:
        routes, _ = await other_worker.routes_for("shared-model", 0, None)
        return {route.provider_id for route in routes}

    assert broken_provider.pk in asyncio.run(other_worker_routes())


def test_a_slow_non_stream_generation_is_the_requests_failure_not_the_providers(
    live_gateway: LiveGateway, make_upstream, settings
) -> None:
    settings.PROVIDER_EJECT_CONSECUTIVE_FAILURES = 1
    settings.UPSTREAM_FIRST_BYTE_TIMEOUT = 0.3
    slow, twin = make_upstream(["shared-model"]), make_upstream(["shared-model"])
    register(slow, name="slow")
    register(twin, name="twin")
    slow.behaviour["shared-model"] = twin.behaviour["shared-model"] = "slow_first_byte"
    slow.delay = twin.delay = 1.0
    _, key = make_api_key()
    for _ in range(4):
        assert _chat(live_gateway, key).status_code == 504
    # One attempt each (no second provider's time spent on a long generation), nobody ejected.
    assert _chats(slow) + _chats(twin) == 4
    slow.behaviour.clear()
    twin.behaviour.clear()
    for _ in range(20):
        assert _chat(live_gateway, key).status_code == 200
    assert _chats(slow) > 0
    assert _chats(twin) > 0


@pytest.fixture
def health_poller(settings) -> Iterator[None]:
    """The beat's job, on a short interval: poll every active provider, as a Celery worker would."""
    settings.MODEL_HEALTH_INTERVAL_SECONDS = 1.0
    stop = threading.Event()

    def poll() -> None:
        try:
            while not stop.is_set():
                for provider_id in services.providers_due():
                    try:
                        services.provider_check(provider_id=provider_id)
                    except Exception:  # a failed task: the worker polls on, as a Celery worker does
                        close_old_connections()
                stop.wait(settings.MODEL_HEALTH_INTERVAL_SECONDS)
        finally:
            connection.close()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


@pytest.mark.parametrize("with_twin", [True, False], ids=["with-twin", "alone"])
def test_a_killed_upstream_takes_traffic_again_one_poll_after_it_restarts(
    live_gateway: LiveGateway, make_upstream, settings, health_poller: None, with_twin: bool
) -> None:
    settings.MODEL_REGISTRY_REFRESH_SECONDS = 1.0  # the default, so the budget below is the real one
    settings.PROVIDER_EJECT_CONSECUTIVE_FAILURES = 1  # with a twin, the first failure ejects it
    settings.PROVIDER_EJECT_SECONDS = 300  # only a good poll can bring it back in time
    killed = make_upstream(["shared-model"])
    killed_provider = register(killed, name="killed")
    if with_twin:
        register(make_upstream(["shared-model"]), name="twin")
    _, key = make_api_key()
    killed.stop()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # traffic and polls find it dead, and the gateway knows
        _chat(live_gateway, key)
        routes = registry._by_model.get("shared-model", [])
        if not any(route.healthy for route in routes if route.provider_id == killed_provider.pk):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the health poll never marked the killed upstream unhealthy")
    if not with_twin:
        assert _chat(live_gateway, key).status_code == 503
    restarted = make_upstream(["shared-model"], port=killed.port)
    back_at = time.monotonic()
    budget = settings.MODEL_HEALTH_INTERVAL_SECONDS + 2.0
    served_at = None
    while time.monotonic() < back_at + budget + 5:
        answer = _chat(live_gateway, key)
        if _chats(restarted) and answer.status_code == 200:
            served_at = time.monotonic()
            break
        time.sleep(0.05)
    assert served_at is not None, "the restarted upstream never took traffic again"
    assert served_at - back_at <= budget, f"back after {served_at - back_at:.2f} s"


def test_calls_that_reach_no_model_server_leave_no_usage_row(
    live_gateway: LiveGateway, make_upstream
) -> None:
    dead, alive = make_upstream(["shared-model"]), make_upstream(["fake-model"])
    dead_provider = register(dead, name="dead")
    register(alive, name="alive")
    _, key = make_api_key()
    dead.stop()  # refused connections: nothing reached a model server
    assert _chat(live_gateway, key).status_code == 502
    Provider.objects.filter(pk=dead_provider.pk).update(healthy=False)
    services.registry_bump()
    refused = _chat(live_gateway, key)
    assert refused.status_code == 503  # no healthy provider: refused before any upstream call
    assert refused.json()["error"]["code"] == "model_unavailable"
    served = httpx.post(
        f"{live_gateway.url}/v1/chat/completions",
        json={"model": "fake-model", "messages": HELLO},
        headers={"Authorization": f"Bearer {key}"},
        timeout=15,
    )
    assert served.status_code == 200
    # Rows are written in the order calls end: once the served call's row is in, a row for
    # either refusal would be too.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not UsageRecord.objects.exists():
        close_old_connections()
        time.sleep(0.05)
    assert list(UsageRecord.objects.values_list("model", "outcome")) == [("fake-model", "success")]


def test_panic_mode_routes_to_every_provider_when_too_many_are_ejected(make_upstream, settings) -> None:
    settings.PROVIDER_EJECT_CONSECUTIVE_FAILURES = 1
    settings.PROVIDER_PANIC_THRESHOLD_PERCENT = 50
    first, second, third = (
        register(make_upstream(["shared-model"]), name=name).pk for name in ("first", "second", "third")
    )
    worker = Registry()

    async def in_rotation() -> set[int]:
        routes, _ = await worker.routes_for("shared-model", 0, None)
        return {route.provider_id for route in routes}

    assert asyncio.run(in_rotation()) == {first, second, third}
    assert worker.record_failure(first)
    assert asyncio.run(in_rotation()) == {second, third}  # two of three left: above the threshold
    assert worker.record_failure(second)
    # One of three left is below 50 %: the ejections are ignored and traffic spreads over all.
    assert asyncio.run(in_rotation()) == {first, second, third}
    assert not worker.record_failure(third)  # and the last live one is never ejected
