"""The Administration and Conversations APIs document the same operations as before they became
viewsets: operation ids, paths, methods, parameters, request and response schemas.

`openapi_admin_conversations.json` was written from the schema of the APIView implementation,
before the move. It holds every operation under /v1/organization (but the model providers and
usage routes, which the inference app serves) and /v1/conversations, and every component those
operations reach. Components copied verbatim from OpenAI's vendored spec are recorded by name
only: their content is the vendored file's, pinned by its own tests.

A deliberate change to these APIs' documentation is listed in FIXES, with why; the baseline
itself is not edited by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from gateway.schema import schema_refs

BASELINE = Path(__file__).with_name("openapi_admin_conversations.json")
VENDORED = Path(__file__).resolve().parents[1] / "openapi" / "openai.json"

# "METHOD path" or a component name -> why its documentation changed on purpose.
FIXES: dict[str, str] = {
    "GET /v1/conversations": "limit documents the 1-100 range the route enforces (0 was documented valid)",
    "POST /v1/conversations": "the body is optional, as in OpenAI's spec (the route always served none); "
    "title may be null (no title)",
    "POST /v1/conversations/{conversation_id}": "title may be null: it leaves the title as it is",
    "PatchedConversationUpdateInRequest": "title may be null: it leaves the title as it is",
    "ConversationItemList": "first_id and last_id are null on an empty page (no item to name); OpenAI's "
    "SDKs read the list as a cursor page and never parse the two ids",
}
# Resources added after the move by new features (model allow-lists and budgets): new paths,
# not changes of the documented ones, so they are outside the comparison.
ADDED_AFTER_THE_MOVE = ("/model_access", "/budget")


def _in_scope(path: str) -> bool:
    if path.startswith("/v1/conversations"):
        return True
    inference_routes = (
        "/v1/organization/models",
        "/v1/organization/usage",
        "/v1/organization/{org_id}/usage",
        "/v1/organization/costs",
    )
    if path.endswith(ADDED_AFTER_THE_MOVE):
        return False
    return path.startswith("/v1/organization") and not path.startswith(inference_routes)


def snapshot(schema: dict[str, Any]) -> dict[str, Any]:
    """The part of the OpenAPI document these APIs own, in the baseline's form."""
    operations = {
        f"{method.upper()} {path}": operation
        for path, item in schema["paths"].items()
        if _in_scope(path)
        for method, operation in item.items()
    }
    components = schema["components"]["schemas"]
    names: set[str] = set()
    schema_refs(operations, names)
    pending = list(names)
    while pending:
        found: set[str] = set()
        schema_refs(components[pending.pop()], found)
        pending += sorted(found - names)
        names |= found
    vendored = json.loads(VENDORED.read_text())["schemas"]
    return {
        "operations": operations,
        "schemas": {
            name: components[name] for name in sorted(names) if vendored.get(name) != components[name]
        },
        "vendored_schemas": sorted(name for name in names if vendored.get(name) == components[name]),
    }


@pytest.fixture(scope="module")
def current() -> dict[str, Any]:
    return snapshot(SchemaGenerator().get_schema(request=None, public=True))


@pytest.fixture(scope="module")
def baseline() -> dict[str, Any]:
    recorded: dict[str, Any] = json.loads(BASELINE.read_text())
    return recorded


def _differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(
        name
        for name in before.keys() | after.keys()
        if name not in FIXES and before.get(name) != after.get(name)
    )


def test_same_operations_paths_and_methods(baseline: dict[str, Any], current: dict[str, Any]) -> None:
    assert sorted(current["operations"]) == sorted(baseline["operations"])
    ids = {name: operation["operationId"] for name, operation in current["operations"].items()}
    assert ids == {name: operation["operationId"] for name, operation in baseline["operations"].items()}


def test_same_parameters_bodies_and_responses(baseline: dict[str, Any], current: dict[str, Any]) -> None:
    changed = _differences(baseline["operations"], current["operations"])
    assert not changed, f"operations documented differently than before: {changed}"


def test_same_component_schemas(baseline: dict[str, Any], current: dict[str, Any]) -> None:
    changed = _differences(baseline["schemas"], current["schemas"])
    assert not changed, f"components documented differently than before: {changed}"
    amended = [name for name in baseline["vendored_schemas"] if name not in FIXES]
    assert [name for name in current["vendored_schemas"] if name not in FIXES] == amended


def test_fixes_name_real_changes(baseline: dict[str, Any], current: dict[str, Any]) -> None:
    """A listed fix that changes nothing is stale: drop it, or the list stops meaning anything."""
    for name in FIXES:
        if " " in name:
            assert baseline["operations"].get(name) != current["operations"].get(name), f"stale fix: {name}"
        else:
            # A vendored component we amend leaves the vendored list for the changed ones.
            assert name in current["schemas"], f"stale fix: {name}"
            assert baseline["schemas"].get(name) != current["schemas"][name], f"stale fix: {name}"
