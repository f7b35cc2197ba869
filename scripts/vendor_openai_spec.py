"""Copy the OpenAI operations the gateway mirrors, and the schemas they use, out of the official spec.

    python scripts/vendor_openai_spec.py [path/to/openai/openapi.json]

Writes gateway/openapi/openai.json, which gateway.openapi merges into our schema for the routes
that are not DRF views (the hot path, streaming views). Re-run it when the spec is updated.
The spec is OpenAI's (MIT licence, github.com/openai/openai-openapi).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.schema import schema_refs  # noqa: E402 -- needs the project root on the path

DEFAULT_SPEC = ROOT / "tests" / "openai" / "openapi.json"
OUTPUT = ROOT / "gateway" / "openapi" / "openai.json"

# (method, OpenAI path): the operations whose wire format we mirror exactly.
MIRRORED = [
    ("post", "/chat/completions"),
    ("post", "/completions"),
    ("post", "/embeddings"),
    ("get", "/models"),
    ("get", "/models/{model}"),
    ("post", "/responses"),
    ("get", "/responses/{response_id}"),
    ("delete", "/responses/{response_id}"),
    ("post", "/responses/{response_id}/cancel"),
    ("get", "/responses/{response_id}/input_items"),
    ("post", "/conversations"),
    ("get", "/conversations/{conversation_id}"),
    ("post", "/conversations/{conversation_id}"),
    ("delete", "/conversations/{conversation_id}"),
    ("post", "/conversations/{conversation_id}/items"),
    ("get", "/conversations/{conversation_id}/items"),
    ("get", "/conversations/{conversation_id}/items/{item_id}"),
    ("delete", "/conversations/{conversation_id}/items/{item_id}"),
]
KEEP = ("summary", "description", "parameters", "requestBody", "responses")
EXTRA_SCHEMAS = ["ErrorResponse", "Error"]


def main() -> None:
    spec = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SPEC).read_text())
    schemas = spec["components"]["schemas"]
    operations: dict[str, Any] = {}
    pending: set[str] = set(EXTRA_SCHEMAS)
    for method, path in MIRRORED:
        operation = spec["paths"][path][method]
        kept = {key: operation[key] for key in KEEP if key in operation}
        # Code samples and SDK hints are OpenAI's, not ours.
        kept.pop("x-oaiMeta", None)
        operations[f"{method.upper()} {path}"] = kept
        schema_refs(kept, pending)
    closure: dict[str, Any] = {}
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        closure[name] = schemas[name]
        found: set[str] = set()
        schema_refs(schemas[name], found)
        pending |= found - closure.keys()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "source": "openai/openai-openapi (MIT)",
        "operations": operations,
        "schemas": dict(sorted(closure.items())),
    }
    OUTPUT.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
    print(f"{len(operations)} operations, {len(closure)} schemas -> {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
