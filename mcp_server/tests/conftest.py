from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
from django.conf import settings as django_settings
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_server.tests.live import GatewayProcess
from tests.fakes.serper import FakeSerper, StaticSite

# --- The live gateway (a uvicorn subprocess with two workers) -----------------------------


@pytest.fixture(scope="session")
def live_serper() -> Iterator[FakeSerper]:
    fake = FakeSerper().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def live_site() -> Iterator[StaticSite]:
    static = StaticSite().start()
    yield static
    static.stop()


def _database_url() -> str:
    db = django_settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    )


def _gateway_env(serper: FakeSerper) -> dict[str, str]:
    if django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the multi-worker MCP tests need PostgreSQL (DATABASE_URL)")
    url = _database_url()  # the test database: django_db_setup has renamed it by now
    return {
        "GATEWAY_ENV": "test",
        "DATABASE_URL": url,
        "DB_POSTGRESQL_READ1_DSN": url,
        "DATABASE_READ_FROM_REPLICAS": "false",
        "REDIS_URL": django_settings.REDIS_URL,
        "SERPER_API_KEY": serper.api_key,
        "SERPER_BASE_URL": serper.base_url,
        "SERPER_SCRAPE_URL": serper.scrape_url,
        "WEB_FETCH_ALLOW_LOOPBACK": "true",
        "ALLOWED_CORS_HOSTS": "https://app.example.com",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,gateway.example.com",
        "LOG_LEVEL": "WARNING",
        "MCP_STREAM_KEEPALIVE_SECONDS": "1",
    }


@pytest.fixture(scope="session")
def mcp_gateway(
    django_db_setup: None, live_serper: FakeSerper, live_site: StaticSite
) -> Iterator[GatewayProcess]:
    """The gateway as deployed: `uvicorn --workers 2` on the test database and Redis."""
    gateway = GatewayProcess(_gateway_env(live_serper), workers=2).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def mcp_gateway_replica(django_db_setup: None, live_serper: FakeSerper) -> Iterator[GatewayProcess]:
    """A second replica sharing the database and Redis, for cross-replica tests."""
    gateway = GatewayProcess(_gateway_env(live_serper), workers=1).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def mcp_gateway_daphne(django_db_setup: None, live_serper: FakeSerper) -> Iterator[GatewayProcess]:
    """The gateway under daphne, which never sends ASGI lifespan events."""
    gateway = GatewayProcess(_gateway_env(live_serper), server="daphne").start()
    yield gateway
    gateway.stop()


@pytest.fixture
def serper_reset(live_serper: FakeSerper) -> Iterator[FakeSerper]:
    yield live_serper
    live_serper.behaviour = "ok"
    live_serper.requests.clear()


@contextlib.asynccontextmanager
async def mcp_client(
    gateway: GatewayProcess,
    key: str,
    *,
    mode: str = "auto",
    path: str = "/v1/mcp",
    headers: dict[str, str] | None = None,
    **options: Any,
) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}", **(headers or {})}, timeout=30) as http,
        Client(streamable_http_client(gateway.url + path, http_client=http), mode=mode, **options) as client,
    ):  # type: ignore[arg-type]
        yield client
