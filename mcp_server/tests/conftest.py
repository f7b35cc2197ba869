from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.serper import FakeSerper, StaticSite


@pytest.fixture
def fake_serper(settings) -> Iterator[FakeSerper]:  # type: ignore[no-untyped-def]
    fake = FakeSerper().start()
    settings.SERPER_API_KEY = fake.api_key
    settings.SERPER_BASE_URL = fake.base_url
    settings.SERPER_SCRAPE_URL = fake.scrape_url
    yield fake
    fake.stop()


@pytest.fixture
def site() -> Iterator[StaticSite]:
    static = StaticSite().start()
    yield static
    static.stop()
