from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.serper import FakeSerper, StaticSite
from tests.live_server import GatewayProcess, shared_database_url

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


def _gateway_env(serper: FakeSerper) -> dict[str, str]:
    # The test database (django_db_setup has renamed it by now), also as a read replica.
    return {
        "DB_POSTGRESQL_READ1_DSN": shared_database_url(),
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
    """The gateway as deployed: `python -m gateway.server`, two uvicorn workers, on the test
    database and Redis."""
    gateway = GatewayProcess(env=_gateway_env(live_serper), database=True, workers=2).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def mcp_gateway_replica(django_db_setup: None, live_serper: FakeSerper) -> Iterator[GatewayProcess]:
    """A second replica sharing the database and Redis, for cross-replica tests."""
    gateway = GatewayProcess(env=_gateway_env(live_serper), database=True).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def mcp_gateway_daphne(django_db_setup: None, live_serper: FakeSerper) -> Iterator[GatewayProcess]:
    """The gateway under daphne (SERVER=daphne), which never sends ASGI lifespan events."""
    gateway = GatewayProcess(env=_gateway_env(live_serper), database=True, server="daphne").start()
    yield gateway
    gateway.stop()


@pytest.fixture
def serper_reset(live_serper: FakeSerper) -> Iterator[FakeSerper]:
    yield live_serper
    live_serper.behaviour = "ok"
    live_serper.requests.clear()
