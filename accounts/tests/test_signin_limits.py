"""Sign-in routes are limited per client address (guest login, refresh, Google callback), over
real HTTP: 429 with Retry-After in the OpenAI error body, X-Forwarded-For believed only from
TRUSTED_PROXIES, and one count across workers."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from gateway.client_address import client_address
from tests.live_server import GatewayProcess, LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def gateway() -> Iterator[LiveGateway]:
    """The gateway without uvicorn's own proxy-header handling, which would otherwise believe
    X-Forwarded-For from 127.0.0.1 before the gateway's TRUSTED_PROXIES rule is even asked."""
    live = LiveGateway()
    live.server.config.proxy_headers = False
    yield live.start()
    live.stop()


def _guest_login(gateway: LiveGateway, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return httpx.post(f"{gateway.url}/v1/auth/guest-login", headers=headers, timeout=15)


def _assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == {
        "error": {
            "message": response.json()["error"]["message"],
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_guest_login_is_limited_per_address(gateway: LiveGateway, settings: Any) -> None:
    settings.AUTH_GUEST_LOGIN_PER_MINUTE = 3
    assert [_guest_login(gateway).status_code for _ in range(3)] == [200, 200, 200]
    _assert_limited(_guest_login(gateway))
    # Without a trusted proxy, a made-up X-Forwarded-For is the same client asking again.
    _assert_limited(_guest_login(gateway, forwarded_for="203.0.113.7"))


def test_forwarded_for_counts_only_from_a_trusted_proxy(gateway: LiveGateway, settings: Any) -> None:
    settings.AUTH_GUEST_LOGIN_PER_MINUTE = 2
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    # Behind the proxy, each client has its own count...
    for client in ("198.51.100.1", "198.51.100.2"):
        assert _guest_login(gateway, forwarded_for=client).status_code == 200
        assert _guest_login(gateway, forwarded_for=client).status_code == 200
        _assert_limited(_guest_login(gateway, forwarded_for=client))
    # ...and what a client writes to the left of what the proxy saw changes nothing.
    _assert_limited(_guest_login(gateway, forwarded_for="10.9.9.9, 198.51.100.1"))


def test_refresh_and_google_callback_are_limited(gateway: LiveGateway, settings: Any) -> None:
    settings.AUTH_REFRESH_PER_MINUTE = 2
    settings.AUTH_GOOGLE_CALLBACK_PER_MINUTE = 2
    for _ in range(2):  # refused for want of a cookie, but counted
        assert httpx.get(f"{gateway.url}/v1/auth/refresh-token", timeout=15).status_code == 401
    _assert_limited(httpx.get(f"{gateway.url}/v1/auth/refresh-token", timeout=15))

    body = {"code": "c", "state": "s"}
    for _ in range(2):
        response = httpx.post(f"{gateway.url}/v1/auth/google/callback", json=body, timeout=15)
        assert response.status_code == 400, response.text
    _assert_limited(httpx.post(f"{gateway.url}/v1/auth/google/callback", json=body, timeout=15))
    # Each route has its own count: guest login still works from this address.
    assert _guest_login(gateway).status_code == 200


def test_the_limit_holds_across_workers_under_concurrency() -> None:
    """Thirty simultaneous sign-ups from one address against two workers: exactly twenty pass."""
    workers = GatewayProcess(
        database=True, workers=2, env={"AUTH_GUEST_LOGIN_PER_MINUTE": "20"}, needs_redis=True
    ).start()
    try:

        def sign_up(_: int) -> int:
            # A connection each, so both workers take a share.
            return httpx.post(f"{workers.url}/v1/auth/guest-login", timeout=30).status_code

        with ThreadPoolExecutor(max_workers=30) as pool:
            statuses = list(pool.map(sign_up, range(30)))
    finally:
        workers.stop()
    assert sorted(statuses) == [200] * 20 + [429] * 10


@pytest.mark.parametrize(
    ("trusted", "remote", "forwarded", "expected"),
    [
        ([], "192.0.2.10", "203.0.113.1", "192.0.2.10"),
        (["192.0.2.10"], "192.0.2.10", "203.0.113.1", "203.0.113.1"),
        (["192.0.2.0/24"], "192.0.2.10", "203.0.113.1, 192.0.2.11", "203.0.113.1"),
        (["192.0.2.10"], "192.0.2.10", "spoofed, 203.0.113.1", "203.0.113.1"),
        (["192.0.2.10"], "192.0.2.10", "203.0.113.1, garbage", "192.0.2.10"),
        (["192.0.2.10"], "192.0.2.10", "", "192.0.2.10"),
        (["2001:db8::/32"], "2001:db8::1", "[2001:db8:1::5]:443, 2001:db8::2", "2001:db8:1::5"),
        (["192.0.2.10"], "::ffff:192.0.2.10", "198.51.100.4:5555", "198.51.100.4"),
        ([], "", "203.0.113.1", "unknown"),
    ],
)
def test_client_address(
    settings: Any, trusted: list[str], remote: str, forwarded: str, expected: str
) -> None:
    settings.TRUSTED_PROXIES = trusted
    meta = {"REMOTE_ADDR": remote, "HTTP_X_FORWARDED_FOR": forwarded}
    assert client_address(meta) == expected
