"""Fixtures shared by several apps' tests, registered once by the root conftest.py
(`pytest_plugins`), so no app's tests import another app's conftest."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from inference import services
from inference.models import Provider
from inference.registry import registry
from inference.tests.fake_upstream import FakeUpstream
from organizations.tests.factories import make_api_key
from tests.fakes.google_idp import FakeGoogleIdP
from tests.fakes.serper import FakeSerper, StaticSite
from tests.live_server import LiveGateway

# --- The gateway in the test process, the fake upstream, a project key ------------------------


@pytest.fixture(scope="session")
def live_gateway() -> Iterator[LiveGateway]:
    gateway = LiveGateway().start()
    yield gateway
    gateway.stop()


@pytest.fixture
def make_upstream() -> Iterator[Callable[..., FakeUpstream]]:
    started: list[FakeUpstream] = []

    def make(models: list[str] | None = None, *, port: int | None = None) -> FakeUpstream:
        upstream = FakeUpstream(models, port=port).start()
        started.append(upstream)
        return upstream

    yield make
    for upstream in started:
        upstream.stop()


@pytest.fixture
def upstream(make_upstream: Callable[..., FakeUpstream]) -> FakeUpstream:
    return make_upstream(["fake-model", "fake-reasoner"])


@pytest.fixture(autouse=True)
def _fresh_registry(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Every test starts with an empty traffic record and reloads the routing table on every
    request: tests change providers between calls."""
    settings.MODEL_REGISTRY_REFRESH_SECONDS = 0
    settings.PROVIDER_EJECT_SECONDS = 30
    settings.USAGE_FLUSH_INTERVAL_SECONDS = 0.1
    registry.invalidate()
    registry.reset()
    yield
    registry.reset()


def register(upstream: FakeUpstream, *, name: str = "fake", api_key: str = "upstream-secret-key") -> Provider:
    provider = services.provider_create(name=name, base_url=upstream.base_url, api_key=api_key)
    checked = services.provider_check(provider_id=provider.pk, force=True)
    assert checked is not None
    assert checked.healthy, checked.last_error
    assert checked.consecutive_failures == 0, checked.last_error
    return checked


@pytest.fixture
def provider(upstream: FakeUpstream) -> Provider:
    return register(upstream)


@pytest.fixture
def project_key() -> tuple[object, str]:
    return make_api_key()


@pytest.fixture
def sdk(live_gateway: LiveGateway, project_key: tuple[object, str]) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{live_gateway.url}/v1",
        api_key=project_key[1],
        max_retries=0,
        _strict_response_validation=True,
    )


# --- The web tools' fakes ----------------------------------------------------------------


@pytest.fixture
def fake_serper(settings) -> Iterator[FakeSerper]:  # type: ignore[no-untyped-def]
    """A fake Serper on 127.0.0.1, and the settings pointing the web tools at it."""
    fake = FakeSerper().start()
    settings.SERPER_API_KEY = fake.api_key
    settings.SERPER_BASE_URL = fake.base_url
    settings.SERPER_SCRAPE_URL = fake.scrape_url
    yield fake
    fake.stop()


@pytest.fixture
def site() -> Iterator[StaticSite]:
    """A local web site for the page fetch."""
    static = StaticSite().start()
    yield static
    static.stop()


# --- The fake Google identity provider -------------------------------------------------------


@pytest.fixture(scope="session")
def _google_idp_server() -> Iterator[FakeGoogleIdP]:
    idp = FakeGoogleIdP().start()
    yield idp
    idp.stop()


@pytest.fixture
def google_idp(_google_idp_server: FakeGoogleIdP, settings: Any) -> FakeGoogleIdP:
    """The fake provider, reset, with the gateway's OAUTH2_GOOGLE_* settings pointed at it."""
    idp = _google_idp_server
    idp.reset()
    settings.OAUTH2_GOOGLE_CLIENT_ID = idp.client_id
    settings.OAUTH2_GOOGLE_CLIENT_SECRET = idp.client_secret
    settings.OAUTH2_GOOGLE_REDIRECT_URL = idp.redirect_uri
    settings.OAUTH2_GOOGLE_AUTHORIZE_URL = idp.authorize_url
    settings.OAUTH2_GOOGLE_TOKEN_URL = idp.token_url
    settings.OAUTH2_GOOGLE_CERTS_URL = idp.certs_url
    settings.OAUTH2_GOOGLE_ISSUER = idp.issuer
    return idp
