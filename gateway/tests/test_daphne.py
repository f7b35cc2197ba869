"""The gateway under daphne (`SERVER=daphne python -m gateway.server`): a chat stream through the
fake upstream arrives chunk by chunk, and the MCP server answers initialize and tools/list.
daphne sends no ASGI lifespan events, so both depend on the router's lazy start."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from inference.models import Provider
from inference.tests.fake_upstream import FakeUpstream
from tests.live_server import GatewayProcess
from tests.mcp_client import mcp_client

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def daphne() -> Iterator[GatewayProcess]:
    server = GatewayProcess(
        database=True,
        server="daphne",
        env={"MODEL_REGISTRY_REFRESH_SECONDS": "0", "LOG_LEVEL": "WARNING"},
    ).start()
    yield server
    server.stop()


def test_a_chat_stream_is_relayed_as_it_arrives(
    daphne: GatewayProcess, upstream: FakeUpstream, provider: Provider, project_key: tuple[Any, str]
) -> None:
    upstream.behaviour["fake-model"] = "slow_stream"
    upstream.delay = 0.01  # 200 chunks: about 2 s in all
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    headers = {"Authorization": f"Bearer {project_key[1]}"}
    started = time.monotonic()
    first_chunk_at = None
    events: list[bytes] = []
    with httpx.stream(
        "POST", f"{daphne.url}/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                first_chunk_at = first_chunk_at or time.monotonic()
                events.append(line.removeprefix("data: ").encode())
    finished = time.monotonic()
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert len(chunks) > 200
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # Not buffered: the first chunk came well before the last (the upstream paces them over ~2 s).
    assert first_chunk_at is not None
    assert finished - first_chunk_at > 1.0, (first_chunk_at - started, finished - started)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_mcp_initialize_and_tools_list(
    daphne: GatewayProcess, project_key: tuple[Any, str], mode: str
) -> None:
    async with mcp_client(daphne, project_key[1], mode=mode) as client:
        assert client.server_capabilities.tools is not None  # negotiated while entering
        tools = await client.list_tools()
    names = {tool.name for tool in tools.tools}
    assert {"serper_search", "fetch_webpage"} <= names
