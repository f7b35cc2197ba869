"""Validate bodies against the official OpenAI OpenAPI spec, vendored in tests/openai/ (MIT).

The spec needs three in-memory patches to be usable with a Draft 2020-12 validator: its
`discriminator` keywords name mappings a plain JSON Schema validator cannot follow (drop them),
OpenAPI 3.0-style `nullable: true` becomes `anyOf [..., null]`, and Response allows `usage: null`
(OpenAI sends null usage on in-progress responses although the schema says object).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent / "openai" / "openapi.json"


def _patch(node: Any, relax_oneof: bool) -> Any:
    if isinstance(node, list):
        return [_patch(x, relax_oneof) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _patch(v, relax_oneof) for k, v in node.items() if k != "discriminator"}
    if relax_oneof and "oneOf" in out:
        out["anyOf"] = out.pop("oneOf")
    if out.pop("nullable", False) is True:
        out = {"anyOf": [out, {"type": "null"}]}
    return out


@functools.lru_cache(maxsize=2)
def _registry(relax_oneof: bool) -> Registry:
    components = _patch(json.loads(SPEC_PATH.read_text())["components"], relax_oneof)
    for sub in components["schemas"]["Response"]["allOf"]:
        if "usage" in sub.get("properties", {}):
            sub["properties"]["usage"] = {"anyOf": [sub["properties"]["usage"], {"type": "null"}]}
    root = {"$id": "urn:openai", "components": components}
    return Registry().with_resource(
        "urn:openai", Resource.from_contents(root, default_specification=DRAFT202012)
    )


@functools.lru_cache(maxsize=256)
def validator(component: str, relax_oneof: bool = False) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        {"$ref": f"urn:openai#/components/schemas/{component}"}, registry=_registry(relax_oneof)
    )


def assert_valid(component: str, instance: Any, relax_oneof: bool = False) -> None:
    err = best_match(validator(component, relax_oneof).iter_errors(instance))
    if err is not None:
        raise AssertionError(f"{component} @ /{'/'.join(map(str, err.absolute_path))}: {err.message[:300]}")
