"""Small helpers for the Responses tests: raw HTTP calls and SSE parsing."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.live_server import LiveGateway


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post(gateway: LiveGateway, key: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1{path}", json=body, headers=headers(key), timeout=15)


def get(gateway: LiveGateway, key: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{gateway.url}/v1{path}", params=params, headers=headers(key), timeout=15)


def parse_sse(lines: list[str]) -> list[dict[str, Any]]:
    """`event:` + `data:` pairs → event dicts; checks that the two names agree."""
    events: list[dict[str, Any]] = []
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            event = orjson.loads(line[len("data: ") :])
            assert event["type"] == name, (event["type"], name)
            events.append(event)
            name = None
    return events


def stream_events(
    gateway: LiveGateway,
    key: str,
    body: dict[str, Any] | None = None,
    *,
    path: str = "/responses",
    **params: Any,
) -> list[dict[str, Any]]:
    method = "POST" if body is not None else "GET"
    with httpx.stream(
        method, f"{gateway.url}/v1{path}", json=body, params=params, headers=headers(key), timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        return parse_sse([line for line in response.iter_lines() if line])
