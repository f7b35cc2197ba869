"""The OpenAPI schema documents every /v1 route, with jan-server's API groups as tags."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator

TAGS = {
    "Authentication",
    "Chat Completions",
    "Conversation-aware Chat",
    "Conversations",
    "Responses",
    "Administration",
    "Server",
    "MCP",
}
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


def _routes(patterns: list[Any], prefix: str = "") -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            found.append("/" + _CONVERTER.sub(r"{\1}", route))
    return found


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    generated: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    return generated


def test_every_v1_route_is_documented(schema: dict[str, Any]) -> None:
    routes = {route for route in _routes(get_resolver().url_patterns) if route.startswith("/v1/")}
    assert routes, "no /v1 routes found: the walk is broken"
    missing = sorted(routes - set(schema["paths"]))
    assert not missing, f"routes missing from the OpenAPI schema: {missing}"


def test_operations_have_ids_tags_errors_and_security(schema: dict[str, Any]) -> None:
    seen: set[str] = set()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            where = f"{method.upper()} {path}"
            assert operation.get("operationId"), where
            assert operation["operationId"] not in seen, f"duplicate operationId at {where}"
            seen.add(operation["operationId"])
            assert set(operation.get("tags", [])) <= TAGS, where
            assert operation.get("tags"), where
            statuses = set(operation["responses"])
            assert any(status.startswith("2") or status.startswith("3") for status in statuses), where
            if operation.get("security"):  # absent: a public route (login, health)
                assert "401" in statuses, f"{where} does not document 401"


def test_mirrored_operations_use_openais_shapes(schema: dict[str, Any]) -> None:
    chat = schema["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateChatCompletionRequest"
    }
    answers = chat["responses"]["200"]["content"]
    assert set(answers) == {"application/json", "text/event-stream"}
    assert "CreateChatCompletionStreamResponse" in schema["components"]["schemas"]


def _nodes(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, dict):
            found.append(current)
            pending.extend(current.values())
        elif isinstance(current, list):
            pending.extend(current)
    return found


def test_every_discriminator_maps_its_values_to_components(schema: dict[str, Any]) -> None:
    """OpenAI's discriminators name no mapping, so tools looked `reasoning` up as a component of
    that name; gateway.schema maps each (or drops it where a value belongs to two branches)."""
    components = schema["components"]["schemas"]
    discriminated = [node for node in _nodes(schema) if isinstance(node.get("discriminator"), dict)]
    assert discriminated
    for node in discriminated:
        mapping = node["discriminator"].get("mapping")
        assert mapping, node["discriminator"]
        for target in mapping.values():
            assert target.rsplit("/", 1)[1] in components, target


def test_strict_inputs_document_that_they_refuse_unknown_fields(schema: dict[str, Any]) -> None:
    from gateway.api import StrictIn

    components = schema["components"]["schemas"]
    strict = {cls.__name__ for cls in _subclasses(StrictIn) if not cls.__name__.startswith("_")}
    documented = {name.removesuffix("Request") for name in components} & strict
    assert documented, "no StrictIn component found: the walk is broken"
    for name in documented:
        assert components[f"{name}Request"]["additionalProperties"] is False, name


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found
