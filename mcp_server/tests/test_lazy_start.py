"""Servers without ASGI lifespan (daphne, `uvicorn --lifespan off`): the MCP runtime starts on
the first request instead of failing with "Task group is not initialized". The in-process
server also lets these tests read what the worker records: its access log and its metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import uvicorn

from organizations.tests.factories import make_api_key
from tests.fakes.serper import FakeSerper
from tests.live_server import GatewayProcess, free_port
from tests.mcp_client import mcp_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gateway_without_lifespan() -> Iterator[SimpleNamespace]:
    from gateway.asgi import application

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True, name="gateway-no-lifespan")
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}")
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def key() -> str:
    return make_api_key()[1]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_mcp_works_without_lifespan(
    gateway_without_lifespan: SimpleNamespace, key: str, mode: str
) -> None:
    async with mcp_client(gateway_without_lifespan, key, mode=mode) as client:
        tools = (await client.list_tools()).tools
        refused = await client.call_tool("fetch_webpage", {"url": "http://127.0.0.1:1/"})
    assert [tool.name for tool in tools] == ["serper_search", "fetch_webpage"]
    assert refused.is_error is True


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_mcp_works_under_daphne(
    mcp_gateway_daphne: GatewayProcess, serper_reset: FakeSerper, key: str, mode: str
) -> None:
    async with mcp_client(mcp_gateway_daphne, key, mode=mode) as client:
        result = await client.call_tool("serper_search", {"q": "daphne"})
    assert result.is_error is False
    assert result.structured_content is not None
    assert result.structured_content["organic"][0]["title"] == "Result about daphne"


async def test_requests_are_logged_with_the_caller_and_the_mcp_call(
    gateway_without_lifespan: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.background import run_sync

    row, raw = await run_sync(make_api_key)
    caplog.set_level("INFO", logger="gateway.access")
    async with mcp_client(gateway_without_lifespan, raw, mode="legacy") as client:
        await client.call_tool("fetch_webpage", {"url": "ftp://example.com/"})
    lines = [
        r
        for r in caplog.records
        if r.name == "gateway.access" and getattr(r, "mcp_method", None) == "tools/call"
    ]
    assert len(lines) == 1
    line = lines[0]
    assert (line.mcp_name, line.status, line.path) == ("fetch_webpage", 200, "/v1/mcp")  # type: ignore[attr-defined]
    assert line.api_key_id == row.public_id  # type: ignore[attr-defined]
    assert line.project_id == row.project.public_id  # type: ignore[attr-defined]
    assert line.request_id  # type: ignore[attr-defined]


async def test_requests_are_counted_in_the_metrics(
    gateway_without_lifespan: SimpleNamespace, key: str
) -> None:
    from prometheus_client import REGISTRY

    labels = {"http_route": "/v1/conv/mcp", "http_request_method": "POST", "http_response_status_code": "200"}

    def count() -> float:
        return REGISTRY.get_sample_value("http_server_request_duration_seconds_count", labels) or 0.0

    before = count()
    async with mcp_client(gateway_without_lifespan, key, mode="legacy", path="/v1/conv/mcp") as client:
        await client.list_tools()
    assert count() - before >= 2  # initialize and tools/list at least
