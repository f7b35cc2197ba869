"""The API reference pages name no outside host: they must render on a machine without internet."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.live_server import LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)

_ADDRESS = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""")


@pytest.mark.parametrize("path", ["/api/docs", "/api/swagger"])
def test_docs_page_loads_nothing_from_another_host(live_gateway: LiveGateway, path: str) -> None:
    page = httpx.get(f"{live_gateway.url}{path}", timeout=15)
    assert page.status_code == 200
    addresses = [a or b for a, b in _ADDRESS.findall(page.text)]
    assert addresses, "the page should load its script"
    foreign = [a for a in addresses if re.match(r"^(?:[a-z]+:)?//", a) and not a.startswith(live_gateway.url)]
    assert foreign == []
    assert "fonts.googleapis" not in page.text
    assert "fonts.gstatic" not in page.text
