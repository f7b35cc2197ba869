"""Every JSON route answers a 4xx, never a 500, to deeply nested bodies (up to 100,000 levels).

Python's JSON parsers and anything that walks a parsed value recursively (validation, storage,
copying) can hit the recursion limit; that must end as a client error on every route.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from inference.models import Provider
from tests.live_server import LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)

DEPTHS = (64, 500, 990, 1_000, 10_000, 100_000)


def _nested_bodies(depth: int) -> Iterator[tuple[str, bytes]]:
    """Deep values where each kind of route looks: the top level, a list of items, a message's
    content, a free-form object (metadata, tool parameters), an input string's neighbour."""
    arrays = "[" * depth + "]" * depth
    objects = '{"a":' * depth + "1" + "}" * depth
    yield "bare array", arrays.encode()
    yield "bare object", objects.encode()
    yield "items", ('{"items":' + arrays + "}").encode()
    yield "content", ('{"items":[{"type":"message","role":"user","content":' + arrays + "}]}").encode()
    yield "metadata", ('{"metadata":' + objects + "}").encode()
    yield (
        "messages",
        ('{"model":"fake-model","messages":[{"role":"user","content":' + arrays + "}]}").encode(),
    )
    yield "input", ('{"model":"fake-model","input":' + arrays + "}").encode()
    yield (
        "params",
        (
            '{"model":"fake-model","input":"x","tools":[{"type":"function","name":"f","parameters":'
            + objects
            + "}]}"
        ).encode(),
    )


def _json_routes(gateway: LiveGateway) -> list[tuple[str, str]]:
    """(method, path) of every operation with a JSON request body in the published schema."""
    schema = httpx.get(f"{gateway.url}/api/schema", params={"format": "json"}, timeout=30).json()
    routes = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method not in ("post", "put", "patch"):
                continue
            content = (operation.get("requestBody") or {}).get("content") or {}
            if any("json" in kind for kind in content):
                routes.append((method.upper(), re.sub(r"\{[^}]+\}", "x_unknown", path)))
    return sorted(set(routes))


@pytest.fixture
def conversation_routes(live_gateway: LiveGateway, project_key: Any) -> list[tuple[str, str]]:
    created = httpx.post(
        f"{live_gateway.url}/v1/conversations",
        json={},
        headers={"Authorization": f"Bearer {project_key[1]}"},
        timeout=15,
    )
    conversation = created.json()["id"]
    return [
        ("POST", "/v1/conversations"),
        ("POST", f"/v1/conversations/{conversation}"),
        ("PATCH", f"/v1/conversations/{conversation}"),
        ("POST", f"/v1/conversations/{conversation}/items"),
    ]


def _assert_client_errors(gateway: LiveGateway, key: str, routes: list[tuple[str, str]]) -> None:
    failures = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=60) as client:
        for method, path in routes:
            for depth in DEPTHS:
                for name, body in _nested_bodies(depth):
                    answer = client.request(method, path, content=body)
                    # A value up to a thousand levels deep under a key the route ignores is a
                    # valid request (orjson, every route's parser, takes 1,024); past that no
                    # route takes it.
                    acceptable = (
                        answer.status_code < 500 if depth <= 1_000 else 400 <= answer.status_code < 500
                    )
                    if not acceptable:
                        failures.append((method, path, depth, name, answer.status_code, answer.text[:120]))
                    elif answer.status_code >= 400 and answer.headers.get("content-type", "").startswith(
                        "application/json"
                    ):
                        assert "error" in answer.json(), (method, path, answer.text[:200])
    assert not failures, "\n".join(str(failure) for failure in failures)


def test_conversation_routes_refuse_deep_nesting(
    live_gateway: LiveGateway, project_key: Any, conversation_routes: list[tuple[str, str]]
) -> None:
    _assert_client_errors(live_gateway, project_key[1], conversation_routes)


def test_every_json_route_refuses_deep_nesting(
    live_gateway: LiveGateway, project_key: Any, provider: Provider
) -> None:
    routes = _json_routes(live_gateway)
    assert ("POST", "/v1/conversations") in routes
    assert ("POST", "/v1/chat/completions") in routes
    _assert_client_errors(live_gateway, project_key[1], routes)
