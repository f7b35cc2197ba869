"""An MCP SDK client session against a gateway the tests started, authenticated by a key."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.live_server import GatewayProcess, LiveGateway


@contextlib.asynccontextmanager
async def mcp_client(
    gateway: LiveGateway | GatewayProcess,
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
