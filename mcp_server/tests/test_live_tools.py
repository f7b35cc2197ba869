"""The MCP SDK client against `uvicorn --workers 2`, in both protocol eras: handshake/discover,
tools/list, tools/call for both tools (fake Serper, a local page), jan-server's aliases, errors as
tool results, prompts, and the usage record of each call."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mcp_server.models import ToolCall
from organizations.tests.factories import make_api_key
from tests.fakes.serper import FakeSerper, StaticSite
from tests.live_server import GatewayProcess
from tests.mcp_client import mcp_client

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),  # ping, legacy era
]

ERAS = ["legacy", "auto"]  # auto = server/discover, then 2026-07-28 (the SDK's default)

ARTICLE = b"""<html><head><title>Kingfishers</title></head><body><nav>Home | Birds</nav>
<main><h1>Kingfishers</h1><p>The common kingfisher is a small bird with bright blue and orange
plumage that lives near slow rivers and clear lakes across Europe and Asia.</p><p>It dives for small
fish from a perch above the water, and digs its nest at the end of a tunnel in a sandy river bank,
sometimes a metre long. Read the <a href="/field-guide">field guide</a> for identification tips
that separate it from the much rarer pied kingfisher.</p></main><footer>Birdwatch club</footer></body></html>"""


@pytest.fixture
def key() -> tuple[Any, str]:
    return make_api_key()


@pytest.fixture
def article(live_site: StaticSite) -> str:
    live_site.pages["/kingfisher"] = (200, {"content-type": "text/html; charset=utf-8"}, ARTICLE)
    live_site.pages["/go"] = (302, {"location": "/kingfisher"}, b"")
    return live_site.url("/go")


@pytest.mark.parametrize("mode", ERAS)
async def test_handshake_and_tool_list(mcp_gateway: GatewayProcess, key: tuple[Any, str], mode: str) -> None:
    async with mcp_client(mcp_gateway, key[1], mode=mode) as client:
        expected = "2025-11-25" if mode == "legacy" else "2026-07-28"
        assert client.session.protocol_version == expected
        assert client.server_info.name == "jan-gateway"
        capabilities = client.server_capabilities
        assert capabilities.tools is not None
        assert capabilities.prompts is not None
        assert capabilities.resources is not None
        assert capabilities.resources.subscribe is True
        if mode == "legacy":
            await client.send_ping()  # ping is gone from 2026-07-28
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert sorted(tools) == ["fetch_webpage", "serper_search"]  # jan-server's aliases are not listed
    assert tools["serper_search"].input_schema["required"] == ["q"]
    assert set(tools["serper_search"].input_schema["properties"]) == {
        "q", "num", "gl", "hl", "location", "page", "tbs", "autocorrect",
    }  # fmt: skip
    assert tools["fetch_webpage"].input_schema["required"] == ["url"]
    assert set(tools["fetch_webpage"].input_schema["properties"]) == {"url", "include_markdown", "max_chars"}


@pytest.mark.parametrize("mode", ERAS)
async def test_serper_search(
    mcp_gateway: GatewayProcess, serper_reset: FakeSerper, key: tuple[Any, str], mode: str
) -> None:
    async with mcp_client(mcp_gateway, key[1], mode=mode) as client:
        result = await client.call_tool(
            "serper_search", {"q": "kingfisher", "num": 2, "gl": "gb", "tbs": "qdr:m"}
        )
    assert result.is_error is False
    structured = result.structured_content
    assert structured is not None
    assert [r["link"] for r in structured["organic"]] == [
        "https://example.com/first",
        "https://example.org/second",
    ]
    assert structured["answerBox"]["title"] == "Model Context Protocol"
    assert structured["knowledgeGraph"]["title"] == "Model Context Protocol"
    assert structured["peopleAlsoAsk"][0]["question"] == "What is MCP used for?"
    assert structured["relatedSearches"][0] == {"query": "mcp server"}
    text = result.content[0].text  # type: ignore[union-attr]
    assert 'Search results for "kingfisher"' in text
    assert "1. Result about kingfisher" in text
    path, headers, body = serper_reset.requests[-1]
    assert (path, headers["x-api-key"]) == ("/search", serper_reset.api_key)
    assert body == {"q": "kingfisher", "num": 2, "gl": "gb", "tbs": "qdr:m"}


@pytest.mark.parametrize("mode", ERAS)
async def test_fetch_webpage(
    mcp_gateway: GatewayProcess, key: tuple[Any, str], article: str, mode: str
) -> None:
    async with mcp_client(mcp_gateway, key[1], mode=mode) as client:
        plain = await client.call_tool("fetch_webpage", {"url": article})
        markdown = await client.call_tool(
            "fetch_webpage", {"url": article, "include_markdown": True, "max_chars": 5000}
        )
    assert plain.is_error is False, plain.content
    s = plain.structured_content
    assert s is not None
    assert s["title"] == "Kingfishers"
    assert s["final_url"].endswith("/kingfisher")
    assert "bright blue and orange" in s["content"]
    assert "Birdwatch club" not in s["content"]
    assert markdown.structured_content is not None
    assert markdown.structured_content["format"] == "markdown"
    assert "[field guide](http://127.0.0.1:" in markdown.structured_content["content"]


@pytest.mark.parametrize("mode", ERAS)
async def test_seed_tool_names_still_work(
    mcp_gateway: GatewayProcess, serper_reset: FakeSerper, key: tuple[Any, str], article: str, mode: str
) -> None:
    async with mcp_client(mcp_gateway, key[1], mode=mode) as client:
        search = await client.call_tool("google_search", {"q": "otters", "num": 10.0})
        scrape = await client.call_tool("scrape", {"url": article, "includeMarkdown": True})
    assert search.is_error is False
    assert search.structured_content is not None
    assert search.structured_content["organic"][0]["title"] == "Result about otters"
    assert scrape.is_error is False
    assert scrape.structured_content is not None
    assert scrape.structured_content["title"] == "Kingfishers"
    assert scrape.structured_content["format"] == "markdown"


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        ("error_500", "Serper answered HTTP 500: Internal error."),
        ("error_429", "Serper answered HTTP 429: Not enough credits."),
    ],
)
async def test_upstream_errors_are_tool_results(
    mcp_gateway: GatewayProcess, serper_reset: FakeSerper, key: tuple[Any, str], behaviour: str, message: str
) -> None:
    serper_reset.behaviour = behaviour
    async with mcp_client(mcp_gateway, key[1], mode="legacy") as client:
        result = await client.call_tool("serper_search", {"q": "x"})
    assert result.is_error is True
    assert result.content[0].text == message  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ERAS)
async def test_bad_arguments_and_refused_urls_are_tool_results(
    mcp_gateway: GatewayProcess, key: tuple[Any, str], mode: str
) -> None:
    async with mcp_client(mcp_gateway, key[1], mode=mode) as client:
        missing = await client.call_tool("serper_search", {})
        out_of_range = await client.call_tool("serper_search", {"q": "x", "num": 500})
        metadata = await client.call_tool(
            "fetch_webpage", {"url": "http://169.254.169.254/latest/meta-data/"}
        )
        scheme = await client.call_tool("fetch_webpage", {"url": "file:///etc/passwd"})
    assert missing.is_error
    assert "q: Field required" in missing.content[0].text
    assert out_of_range.is_error
    assert "num" in out_of_range.content[0].text
    assert metadata.is_error
    assert metadata.content[0].text == "The address 169.254.169.254 is not a public internet address."  # type: ignore[union-attr]
    assert scheme.is_error
    assert scheme.content[0].text == "Only http and https URLs can be fetched."  # type: ignore[union-attr]


async def test_unknown_tool_is_a_protocol_error(mcp_gateway: GatewayProcess, key: tuple[Any, str]) -> None:
    from mcp.shared.exceptions import MCPError

    async with mcp_client(mcp_gateway, key[1], mode="legacy") as client:
        with pytest.raises(MCPError, match="Unknown tool: nope"):
            await client.call_tool("nope", {})


@pytest.mark.parametrize("mode", ERAS)
async def test_web_research_prompt(mcp_gateway: GatewayProcess, key: tuple[Any, str], mode: str) -> None:
    from mcp.shared.exceptions import MCPError

    async with mcp_client(mcp_gateway, key[1], mode=mode) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        result = await client.get_prompt("web_research", {"topic": "river restoration", "sources": "4"})
        with pytest.raises(MCPError, match="Missing required argument: topic"):
            await client.get_prompt("web_research", {})
        with pytest.raises(MCPError, match="Unknown prompt"):
            await client.get_prompt("nope", {})
    assert {"web_research", "summarize_conversation"} <= set(prompts)
    assert [a.name for a in prompts["web_research"].arguments or []] == ["topic", "sources"]
    text = result.messages[0].content.text  # type: ignore[union-attr]
    assert "river restoration" in text
    assert "serper_search" in text
    assert "fetch_webpage" in text
    assert "4 most relevant" in text
    assert "Sources" in text


async def test_conv_path_serves_the_same_server(mcp_gateway: GatewayProcess, key: tuple[Any, str]) -> None:
    async with mcp_client(mcp_gateway, key[1], mode="legacy", path="/v1/conv/mcp") as client:
        assert sorted(t.name for t in (await client.list_tools()).tools) == ["fetch_webpage", "serper_search"]
    async with mcp_client(mcp_gateway, key[1], path="/v1/conv/mcp") as client:
        assert client.session.protocol_version == "2026-07-28"


async def test_tool_calls_are_attributed_to_the_caller(
    mcp_gateway: GatewayProcess, serper_reset: FakeSerper, key: tuple[Any, str]
) -> None:
    from gateway.background import run_sync

    row, raw = key
    async with mcp_client(mcp_gateway, raw, mode="legacy") as client:
        await client.call_tool("serper_search", {"q": "usage"})
        await client.call_tool("fetch_webpage", {"url": "ftp://nope"})

    def recorded() -> list[ToolCall]:
        return list(ToolCall.objects.order_by("pk"))

    deadline = time.monotonic() + 5
    calls: list[ToolCall] = []
    while time.monotonic() < deadline and len(calls) < 2:
        calls = await run_sync(recorded)
    assert [(c.tool, c.is_error) for c in calls] == [("serper_search", False), ("fetch_webpage", True)]
    assert {(c.api_key_id, c.project_id, c.organization_id) for c in calls} == {
        (row.pk, row.project_id, row.organization_id)
    }
    assert all(c.request_id for c in calls)
