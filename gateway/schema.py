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


@functools.cache
def _vendored() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(VENDORED.read_text())
    return loaded


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
    vendored = _vendored()["schemas"]
    pending = {name for name in needed if name not in schemas}
    while pending:
        name = pending.pop()
        if name in schemas:
            continue
        schemas[name] = copy.deepcopy(vendored[name])
        for prop in NULLABLE_WHEN_EMPTY.get(name, ()):
            schemas[name]["properties"][prop]["type"] = [schemas[name]["properties"][prop]["type"], "null"]
        found: set[str] = set()
        schema_refs(vendored[name], found)
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
