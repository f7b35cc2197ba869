"""Fixtures shared by several apps' tests, registered once by the root conftest.py
(`pytest_plugins`), so no app's tests import another app's conftest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.serper import FakeSerper, StaticSite


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
