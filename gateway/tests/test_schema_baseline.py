"""The Administration and Conversations APIs document the same operations as before they became
viewsets: operation ids, paths, methods, parameters, request and response schemas.

`openapi_admin_conversations.json` was written from the schema of the APIView implementation,
before the move. It holds every operation under /v1/organization (but the model providers and
usage routes, which the inference app serves) and /v1/conversations, and every component those
operations reach. Components copied from OpenAI's vendored spec are recorded by name only: their
content is the vendored file's (with gateway.schema.vendored_component's mechanical mapping of
discriminators), pinned by its own tests; a component we amend on purpose is recorded in full.

A deliberate change to these APIs' documentation is listed in FIXES, with why; the baseline
itself is not edited by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from gateway.schema import schema_refs, vendored_component

BASELINE = Path(__file__).with_name("openapi_admin_conversations.json")
VENDORED = Path(__file__).resolve().parents[1] / "openapi" / "openai.json"

# "METHOD path" or a component name -> why its documentation changed on purpose.
FIXES: dict[str, str] = {
    "GET /v1/conversations": "limit documents the 1-100 range the route enforces (0 was documented valid)",
    "POST /v1/conversations": "the body is optional, as in OpenAI's spec (the route always served none); "
    "title may be null (no title); items are those a conversation holds (ConversationInputItem), not "
    "every Responses item type (the others were refused)",
    "POST /v1/conversations/{conversation_id}": "title may be null: it leaves the title as it is; the "
    "body sets metadata or a title (an empty body was refused)",
    "PatchedConversationUpdateInRequest": "title may be null: it leaves the title as it is; PATCH is now "
    "documented as POST is (the same body and rules)",
    "ConversationItemList": "first_id and last_id are null on an empty page (no item to name); OpenAI's "
    "SDKs read the list as a cursor page and never parse the two ids",
}
# Why each group below changed (found by Schemathesis, gateway/tests/test_schemathesis.py).
_LIMIT = "limit documents the 1-100 range the route enforces"
_STRICT = "the body refuses fields it does not declare: additionalProperties false"
_PATCH = "PATCH parses the same body as POST, required fields included: documented with POST's component"
_RATE_LIMIT_ID = "rate_limit_id documents its form (`rl_` and a model id), refused otherwise"
_ITEMS = "the item types a conversation holds, exactly as conversations.items checks them"
_RESPONSES = "gateway.schema.AMENDMENTS: what the Responses API serves, reached through ConversationItem"
for _prefix in ("/v1/organization", "/v1/organization/{org_id}"):
    for _path in ("/api_keys", "/invites", "/projects", "/projects/{project_id}/api_keys", "/users"):
        FIXES[f"GET {_prefix}{_path}"] = _LIMIT
    FIXES[f"GET {_prefix}/audit_logs"] = _LIMIT
    FIXES[f"GET {_prefix}/projects/{{project_id}}/service_accounts"] = _LIMIT
    FIXES[f"GET {_prefix}/projects/{{project_id}}/users"] = _LIMIT
    FIXES[f"GET {_prefix}/projects/{{project_id}}/rate_limits"] = _LIMIT
    for _method in ("GET", "POST", "DELETE"):
        FIXES[f"{_method} {_prefix}/projects/{{project_id}}/rate_limits/{{rate_limit_id}}"] = _RATE_LIMIT_ID
    for _path in ("/projects/{project_id}", "/projects/{project_id}/users/{user_id}", "/users/{user_id}"):
        FIXES[f"PATCH {_prefix}{_path}"] = _PATCH
FIXES |= {
    "GET /v1/organization": _LIMIT,
    "GET /v1/organization/admin_api_keys": _LIMIT,
    "PATCH /v1/organization/{org_id}": _PATCH,
    "PATCH /v1/conversations/{conversation_id}": "documented as its POST (OpenAI's update): the same body "
    "and answers, the generated documentation had every field optional and no error envelope",
    "POST /v1/conversations/{conversation_id}/items": "items are " + _ITEMS + "; at least one",
    "GET /v1/conversations/{conversation_id}/items": _LIMIT + " (OpenAI states it in the description)",
    "PatchedOrganizationUpdateInRequest": _PATCH,
    "PatchedOrganizationUserUpdateInRequest": _PATCH,
    "PatchedProjectUpdateInRequest": _PATCH,
    "PatchedProjectUserUpdateInRequest": _PATCH,
    "OrganizationUpdateInRequest": _PATCH + "; " + _STRICT,
    "OrganizationRoleEnum": "organization roles are an enum (a role outside it was refused)",
    "ProjectRoleEnum": "project roles are an enum (a role outside it was refused)",
    "AdminKeyCreateInRequest": _STRICT + "; expires_in and expires_at are exclusive",
    "OrganizationKeyCreateInRequest": _STRICT + "; expires_in and expires_at are exclusive",
    "ProjectKeyCreateInRequest": _STRICT + "; expires_in and expires_at are exclusive; service_account_id "
    "with a service key only, and required for one",
    "OrganizationUserAddInRequest": _STRICT + "; email or user_id, one of them; the role enum",
    "ProjectUserAddInRequest": _STRICT + "; email or user_id, one of them; the role enum",
    "OrganizationUserUpdateInRequest": _STRICT + "; the role enum",
    "ProjectUserUpdateInRequest": _STRICT + "; the role enum",
    "InviteCreateInRequest": _STRICT + "; the role enum",
    "InviteProjectInRequest": _STRICT + "; the role enum",
    "InviteVerificationInRequest": _STRICT,
    "OrganizationCreateInRequest": _STRICT,
    "ProjectCreateInRequest": _STRICT,
    "ProjectUpdateInRequest": _STRICT,
    "RateLimitUpdateInRequest": _STRICT,
    "ServiceAccountCreateInRequest": _STRICT,
    "Metadata": "gateway.schema.AMENDMENTS: 16 pairs, keys up to 64 and values up to 512 characters",
    **dict.fromkeys(
        (
            "ConversationFunctionCall",
            "ConversationFunctionCallOutput",
            "ConversationInputFile",
            "ConversationInputImage",
            "ConversationInputItem",
            "ConversationInputText",
            "ConversationMessage",
            "ConversationOutputText",
            "ConversationReasoning",
            "ConversationRefusal",
        ),
        _ITEMS,
    ),
    **dict.fromkeys(
        (
            "CustomToolCall",
            "CustomToolCallOutput",
            "CustomToolParam",
            "FunctionTool",
            "FunctionToolCall",
            "InputImageContent",
            "Tool",
        ),
        _RESPONSES,
    ),
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
        "/v1/organization/{org_id}/costs",
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
    vendored = {name for name in names if name in json.loads(VENDORED.read_text())["schemas"]}

    def as_vendored(name: str) -> bool:
        return name in vendored and vendored_component(name) == components[name]

    return {
        "operations": operations,
        "schemas": {name: components[name] for name in sorted(names) if not as_vendored(name)},
        "vendored_schemas": sorted(name for name in names if as_vendored(name)),
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
    # A vendored component no operation reaches any more left with the operation that stopped
    # using it (which FIXES names); one still reached is still OpenAI's, unless FIXES says why not.
    reached = set(current["vendored_schemas"]) | set(current["schemas"])
    amended = [name for name in baseline["vendored_schemas"] if name not in FIXES and name in reached]
    assert [name for name in current["vendored_schemas"] if name not in FIXES] == amended


def test_fixes_name_real_changes(baseline: dict[str, Any], current: dict[str, Any]) -> None:
    """A listed fix that changes nothing is stale: drop it, or the list stops meaning anything."""
    for name in FIXES:
        if " " in name:
            assert baseline["operations"].get(name) != current["operations"].get(name), f"stale fix: {name}"
        else:
            # A vendored component we amend leaves the vendored list for the changed ones; a
            # component no longer documented is a change too.
            assert baseline["schemas"].get(name) != current["schemas"].get(name), f"stale fix: {name}"
