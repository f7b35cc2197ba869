"""The OpenAPI schema for routes that are not DRF views.

The hot path (a raw ASGI app), streaming Django views and the MCP endpoint are invisible to
drf-spectacular. Each app lists its own in a module named by settings.SCHEMA_EXTERNAL_OPERATIONS;
the postprocessing hook below adds them to the generated schema. Operations that mirror OpenAI's
take their parameters, request body and responses verbatim from the official spec
(gateway/openapi/openai.json, written by scripts/vendor_openai_spec.py), so the documented wire
format is exactly the one OpenAI's SDKs expect; we add our operation id, tag, security and the
error envelope.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

VENDORED = Path(__file__).resolve().parent / "openapi" / "openai.json"

# Every credential the API takes. A route lists the ones it accepts as alternatives.
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "ApiKeyAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "A project, service, organization or ephemeral API key: `Authorization: Bearer sk-…`. "
        "Organization keys pick the project with the `OpenAI-Project` header.",
    },
    "AdminKeyAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An admin API key (`sk-admin_…`): the administration API only.",
    },
    "JwtAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user's access token from `/v1/auth/guest-login`, Google sign-in or `/v1/auth/refresh-token` "
        "(15 minutes). `OpenAI-Organization` / `OpenAI-Project` select where it acts.",
    },
}  # and RefreshCookieAuth, from settings.SPECTACULAR_SETTINGS["APPEND_COMPONENTS"]
# Vendored list components whose cursor ids we answer as null when the page is empty (there is no
# first or last item to name). OpenAI's SDKs read these lists as cursor pages (`data`, `has_more`)
# and never parse the two ids, so the null reaches no typed field.
NULLABLE_WHEN_EMPTY: dict[str, tuple[str, ...]] = {
    "ResponseItemList": ("first_id", "last_id"),
    "ConversationItemList": ("first_id", "last_id"),
}


def _metadata_limits(component: dict[str, Any]) -> None:
    mapping = component["anyOf"][0]
    mapping.update(maxProperties=16, propertyNames={"maxLength": 64})
    mapping["additionalProperties"]["maxLength"] = 512


def _named_model(model: dict[str, Any]) -> None:
    model["anyOf"][0]["minLength"] = 1


def _token_ids(variants: list[dict[str, Any]]) -> None:
    """The array-of-strings variant of a prompt or input holds at least one string; token ids
    (alone or in arrays) are not negative."""
    variants[1]["minItems"] = 1
    variants[2]["items"]["minimum"] = 0
    variants[3]["items"]["items"]["minimum"] = 0


def _chat_request(component: dict[str, Any]) -> None:
    properties = next(part["properties"] for part in component["allOf"] if "properties" in part)
    for name in ("max_tokens", "max_completion_tokens"):
        properties[name]["minimum"] = 1  # OpenAI's answer to 0: "integer below minimum value"


def _completion_request(component: dict[str, Any]) -> None:
    properties = component["properties"]
    _named_model(properties["model"])
    # The prompt is required and null is refused (OpenAI's spec marks it `nullable`, a keyword
    # OpenAPI 3.1 no longer has).
    del properties["prompt"]["nullable"]
    _token_ids(properties["prompt"]["oneOf"])


def _embedding_request(component: dict[str, Any]) -> None:
    properties = component["properties"]
    _named_model(properties["model"])
    variants = properties["input"]["oneOf"]
    variants[0]["minLength"] = 1
    variants[1]["items"]["minLength"] = 1
    _token_ids(variants)


def _only(*names: str) -> Callable[[dict[str, Any]], None]:
    """Keep the union's branches (and discriminator mapping entries) that name these components."""
    refs = {f"#/components/schemas/{name}" for name in names}

    def amend(component: dict[str, Any]) -> None:
        key = "oneOf" if "oneOf" in component else "anyOf"
        component[key] = [branch for branch in component[key] if branch.get("$ref") in refs]
        mapping = component.get("discriminator", {}).get("mapping")
        if mapping is not None:
            component["discriminator"]["mapping"] = {k: v for k, v in mapping.items() if v in refs}

    return amend


def _web_search_tool_choice(component: dict[str, Any]) -> None:
    kind = component["properties"]["type"]
    kind["enum"] = [value for value in kind["enum"] if value.startswith("web_search")]


def _non_empty(*names: str, required: bool = False) -> Callable[[dict[str, Any]], None]:
    """These string properties are not empty (and, with `required`, present and not null)."""

    def amend(component: dict[str, Any]) -> None:
        properties = component["properties"]
        for name in names:
            if required and "anyOf" in properties[name]:  # drop the null branch
                properties[name] = next(b for b in properties[name]["anyOf"] if b.get("type") != "null")
            properties[name]["minLength"] = 1
            if required and name not in component.setdefault("required", []):
                component["required"].append(name)

    return amend


def _image_source(component: dict[str, Any]) -> None:
    """An input image names its source: a URL (or data URL) or an uploaded file's id."""
    component["anyOf"] = [
        {"required": [name], "properties": {name: {"type": "string", "minLength": 1}}}
        for name in ("image_url", "file_id")
    ]


def _input_param(component: dict[str, Any]) -> None:
    text, items = component["oneOf"]
    text["minLength"] = 1
    items["minItems"] = 1


def _create_response(component: dict[str, Any]) -> None:
    """What the Responses API refuses across fields (responses.validation)."""
    given = {"not": {"type": "null"}}
    component["allOf"].extend(
        [
            # OpenAI takes both from a stored prompt (`prompt`), which the gateway does not keep.
            {"required": ["model", "input"]},
            {
                "not": {
                    "required": ["previous_response_id", "conversation"],
                    "properties": {
                        "previous_response_id": {"type": "string", "minLength": 1},
                        "conversation": given,
                    },
                },
                "description": "previous_response_id and conversation are exclusive.",
            },
            {
                "if": {"required": ["background"], "properties": {"background": {"const": True}}},
                "then": {"properties": {"store": {"not": {"const": False}}}},
                "description": "A background response is stored.",
            },
            {
                "if": {"required": ["conversation"], "properties": {"conversation": given}},
                "then": {"properties": {"store": {"not": {"const": False}}}},
                "description": "A response added to a conversation is stored.",
            },
        ]
    )


# The Responses API runs function, custom and namespace tools on the client and web search in the
# gateway; OpenAI's hosted tools (file search, computers, code interpreter, image generation,
# remote MCP, shells, patches) and their items need OpenAI's services, and are refused (400).
RESPONSES_TOOLS = (
    "FunctionTool",
    "CustomToolParam",
    "NamespaceToolParam",
    "WebSearchTool",
    "WebSearchPreviewTool",
)
RESPONSES_ITEMS = (
    "InputMessage",
    "OutputMessage",
    "FunctionToolCall",
    "FunctionCallOutputItemParam",
    "CustomToolCall",
    "CustomToolCallOutput",
    "ReasoningItem",
    "WebSearchToolCall",
)
RESPONSES_TOOL_CHOICES = (
    "ToolChoiceOptions",
    "ToolChoiceAllowed",
    "ToolChoiceTypes",
    "ToolChoiceFunction",
    "ToolChoiceCustom",
)

# Vendored components we serve amended: name -> (amend in place, why). Each states a rule OpenAI
# also enforces, and says in prose only, that the gateway enforces the same way, or narrows a
# union to what the gateway serves.
AMENDMENTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "Metadata": (
        _metadata_limits,
        "16 pairs, keys up to 64 and values up to 512 characters, as its description says",
    ),
    "ModelIdsShared": (_named_model, "a model id is not empty (400 'you must provide a model parameter')"),
    "CreateChatCompletionRequest": (_chat_request, "at least one token to generate"),
    "CreateCompletionRequest": (_completion_request, "a model id, a prompt that is not null, token ids"),
    "CreateEmbeddingRequest": (
        _embedding_request,
        "a model id; the input 'cannot be an empty string'; token ids",
    ),
    "Tool": (_only(*RESPONSES_TOOLS), "the tools the gateway runs"),
    "InputItem": (
        _only("EasyInputMessage", "Item", "ItemReferenceParam"),
        "the item types the gateway serves",
    ),
    "Item": (_only(*RESPONSES_ITEMS), "the item types the gateway serves"),
    "ToolChoiceParam": (_only(*RESPONSES_TOOL_CHOICES), "the tools the gateway runs"),
    "ToolChoiceTypes": (_web_search_tool_choice, "web search is the one built-in tool the gateway runs"),
    "CreateResponse": (_create_response, "the fields the Responses API refuses together"),
    "InputParam": (_input_param, "some input: a string or items"),
    "FunctionCallOutputItemParam": (_non_empty("call_id", required=True), "an output names its call"),
    "FunctionToolCall": (_non_empty("call_id", "name"), "a call has an id and a function name"),
    "CustomToolCall": (_non_empty("call_id", "name"), "a call has an id and a tool name"),
    "CustomToolCallOutput": (_non_empty("call_id"), "an output names its call"),
    "ItemReferenceParam": (_non_empty("id"), "a reference names an item"),
    "FunctionTool": (_non_empty("name"), "a tool has a name"),
    "CustomToolParam": (_non_empty("name"), "a tool has a name"),
    "ToolChoiceFunction": (_non_empty("name"), "names a tool"),
    "ToolChoiceCustom": (_non_empty("name"), "names a tool"),
    "InputImageContent": (_image_source, "an image has a URL or a file id"),
}
ERROR_STATUSES = {
    "400": "Invalid request (the envelope's `param` names the field)",
    "401": "No or invalid credential",
    "403": "The credential may not call this route (e.g. an admin key on a data route)",
    "404": "Unknown object, or one that belongs to another project",
    "429": "Rate limit reached (`Retry-After`, `x-ratelimit-*` headers)",
}


@dataclass(frozen=True)
class ExternalOperation:
    """One documented operation of a non-DRF route."""

    path: str  # ours, e.g. "/v1/chat/completions"
    method: str  # lower case
    operation_id: str
    tag: str
    summary: str
    description: str = ""
    mirror: str | None = None  # "POST /chat/completions": the vendored OpenAI operation
    request: dict[str, Any] | None = None  # a JSON schema, when not mirrored
    request_required: bool = True  # False: a request without a body is served too
    responses: dict[str, Any] = field(default_factory=dict)  # status → response object, when not mirrored
    parameters: list[dict[str, Any]] = field(default_factory=list)
    security: tuple[str, ...] = ("ApiKeyAuth", "JwtAuth")  # alternatives
    errors: tuple[str, ...] = ("400", "401", "403", "404", "429")
    extra_errors: dict[str, str] = field(default_factory=dict)
    # Components of ours the operation refers to (`#/components/schemas/<name>`), added as given.
    components: dict[str, Any] = field(default_factory=dict)
    # Parameter name -> JSON Schema keywords added to a mirrored parameter's schema: the bounds
    # OpenAI states only in the description (`limit` "can range between 1 and 100").
    parameter_bounds: dict[str, dict[str, Any]] = field(default_factory=dict)


@functools.cache
def _vendored() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(VENDORED.read_text())
    return loaded


def _discriminator_values(node: dict[str, Any], prop: str) -> set[str] | None:
    """The values of `prop` a (vendored) schema admits, following refs and unions; None if a
    branch does not pin it."""
    schemas = _vendored()["schemas"]
    if "$ref" in node:
        return _discriminator_values(schemas[node["$ref"].rsplit("/", 1)[1]], prop)
    for keyword in ("oneOf", "anyOf"):
        if keyword in node:
            values: set[str] = set()
            for branch in node[keyword]:
                found = _discriminator_values(branch, prop)
                if found is None:
                    return None
                values |= found
            return values
    for member in node.get("allOf", []):
        found = _discriminator_values(member, prop)
        if found:
            return found
    pinned = node.get("properties", {}).get(prop)
    if isinstance(pinned, dict) and "$ref" in pinned:
        pinned = schemas[pinned["$ref"].rsplit("/", 1)[1]]
    if not isinstance(pinned, dict):
        return None
    if "const" in pinned:
        return {pinned["const"]}
    return set(pinned["enum"]) if "enum" in pinned else None


def _map_discriminators(node: Any) -> None:
    """Give every discriminator of a vendored schema its `mapping`, in place.

    OpenAI's discriminators name no mapping, so OpenAPI tools look a value up as a component of
    that name (`#/components/schemas/message`), which does not exist. Where each value belongs
    to one branch, the mapping says which; where it cannot (a branch without a pinned value, or
    a value two branches share), the discriminator is dropped and the `oneOf` alone decides,
    through each branch's pinned `type`.
    """
    if isinstance(node, list):
        for value in node:
            _map_discriminators(value)
        return
    if not isinstance(node, dict):
        return
    discriminator = node.get("discriminator")
    if isinstance(discriminator, dict) and "mapping" not in discriminator:
        prop = discriminator["propertyName"]
        mapping: dict[str, str] = {}
        branches: list[dict[str, Any]] = node.get("oneOf") or node.get("anyOf") or []
        for branch in branches:
            values = _discriminator_values(branch, prop) if "$ref" in branch else None
            if not values or values & mapping.keys():
                mapping = {}
                break
            mapping.update(dict.fromkeys(sorted(values), branch["$ref"]))
        if mapping:
            discriminator["mapping"] = mapping
        else:
            del node["discriminator"]
    for key, value in node.items():
        if key != "discriminator":
            _map_discriminators(value)


def vendored_component(name: str) -> dict[str, Any]:
    """A vendored component as the document serves it before any amendment of ours: OpenAI's,
    with its discriminators mapped (_map_discriminators)."""
    component: dict[str, Any] = copy.deepcopy(_vendored()["schemas"][name])
    _map_discriminators(component)
    return component


def served_component(name: str) -> dict[str, Any]:
    """A vendored component with our amendments (AMENDMENTS, NULLABLE_WHEN_EMPTY)."""
    component = vendored_component(name)
    for prop in NULLABLE_WHEN_EMPTY.get(name, ()):
        component["properties"][prop]["type"] = [component["properties"][prop]["type"], "null"]
    if name in AMENDMENTS:
        AMENDMENTS[name][0](component)
    return component


def schema_refs(node: Any, found: set[str]) -> None:
    """Add the names of the component schemas `node` refers to (directly) to `found`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/schemas/"):
                found.add(value.rsplit("/", 1)[1])
            else:
                schema_refs(value, found)
    elif isinstance(node, list):
        for value in node:
            schema_refs(value, found)


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    }


def _operation(spec: ExternalOperation) -> dict[str, Any]:
    operation: dict[str, Any] = {}
    if spec.mirror is not None:
        operation = copy.deepcopy(_vendored()["operations"][spec.mirror])
    operation.update(operationId=spec.operation_id, tags=[spec.tag], summary=spec.summary)
    if spec.description:
        operation["description"] = spec.description
    if spec.parameters:
        operation["parameters"] = spec.parameters
    for parameter in operation.get("parameters", []):
        parameter["schema"].update(spec.parameter_bounds.get(parameter["name"], {}))
    if spec.request is not None:
        operation["requestBody"] = {
            "required": spec.request_required,
            "content": {"application/json": {"schema": spec.request}},
        }
    responses = operation.setdefault("responses", {})
    responses.update(copy.deepcopy(spec.responses))
    for status in spec.errors:
        responses[status] = _error_response(ERROR_STATUSES[status])
    for status, description in spec.extra_errors.items():
        responses[status] = _error_response(description)
    operation["security"] = [{name: []} for name in spec.security] if spec.security else []
    return operation


def external_operations() -> list[ExternalOperation]:
    operations: list[ExternalOperation] = []
    for dotted in settings.SCHEMA_EXTERNAL_OPERATIONS:
        operations.extend(import_string(dotted))
    return operations


def add_external_operations(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemes = components.setdefault("securitySchemes", {})
    needed: set[str] = set()
    for spec in external_operations():
        operation = _operation(spec)
        result.setdefault("paths", {}).setdefault(spec.path, {})[spec.method] = operation
        schema_refs(operation, needed)
        for name in spec.security:
            schemes.setdefault(name, SECURITY_SCHEMES[name])
    for spec in external_operations():
        for name, component in spec.components.items():
            schemas.setdefault(name, copy.deepcopy(component))
            schema_refs(component, needed)
    pending = {name for name in needed if name not in schemas}
    while pending:
        name = pending.pop()
        if name in schemas:
            continue
        schemas[name] = served_component(name)
        found: set[str] = set()
        schema_refs(schemas[name], found)
        pending |= {ref for ref in found if ref not in schemas}
    _canonical_security_schemes(result)
    result["paths"] = dict(sorted(result.get("paths", {}).items()))
    return result


def _canonical_security_schemes(result: dict[str, Any]) -> None:
    """Drop the authentication classes' placeholders (accounts.authentication.AlternativeSchemes)
    and define every scheme an operation names from SECURITY_SCHEMES."""
    schemes = result["components"]["securitySchemes"]
    for name in [name for name in schemes if name.startswith("_")]:
        del schemes[name]
    for item in result.get("paths", {}).values():
        for operation in item.values():
            for requirement in operation.get("security", []) if isinstance(operation, dict) else []:
                for name in requirement:
                    if name not in schemes:
                        schemes[name] = SECURITY_SCHEMES[name]
    result["components"]["securitySchemes"] = dict(sorted(schemes.items()))
