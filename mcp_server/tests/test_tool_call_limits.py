"""MCP tools spend the operator's search credit: the project's and the key's tool-call limits hold
across the gateway's workers (one Redis limiter), and a refused call is a tool error that says
which limit and when to retry, with nothing sent to Serper."""

from __future__ import annotations

from typing import Any

import pytest

from organizations.models import ProjectRateLimit
from organizations.ratelimits import TOOL_CALLS
from organizations.tests.factories import make_api_key
from tests.fakes.serper import FakeSerper
from tests.live_server import GatewayProcess
from tests.mcp_client import mcp_client

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]


@pytest.fixture
def keys() -> tuple[str, str]:
    """A key whose project lowered its tool-call figure to 2 a minute (a rate limit for
    `tool_calls`), and a key of another project."""
    key, raw = make_api_key()
    ProjectRateLimit.objects.create(project_id=key.project_id, model=TOOL_CALLS, max_requests_per_1_minute=2)
    return raw, make_api_key()[1]


async def test_tool_calls_over_the_project_limit_are_tool_errors(
    mcp_gateway: GatewayProcess, serper_reset: FakeSerper, keys: tuple[str, str]
) -> None:
    limited, other = keys
    results: list[Any] = []
    async with mcp_client(mcp_gateway, limited) as client:
        for _ in range(3):
            results.append(await client.call_tool("serper_search", {"q": "kingfisher"}))
    assert [result.is_error for result in results] == [False, False, True]
    message = results[2].content[0].text
    assert message.startswith("Rate limit reached for tool calls per min (serper_search is one) in project")
    assert "Limit 2, Used 2" in message
    assert "Please try again in" in message
    assert len(serper_reset.requests) == 2  # the refused call cost no credit
    async with mcp_client(mcp_gateway, other) as client:  # another project is not affected
        assert (await client.call_tool("serper_search", {"q": "otter"})).is_error is False
