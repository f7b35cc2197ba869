"""OpenAPI documentation of /v1/mcp and /v1/conv/mcp (served by mcp_server.transport, not DRF).

MCP is JSON-RPC: the schema documents the HTTP envelope only; the methods are MCP's own.
"""

from __future__ import annotations

from typing import Any

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from gateway.schema import ExternalOperation

_DESCRIPTION = (
    "The MCP server (Model Context Protocol, Streamable HTTP, JSON-RPC 2.0). Tools: `serper_search` "
    "(web search through Serper) and `fetch_webpage` (a public page's title and main text or markdown); "
    "jan-server's `google_search` and `scrape` are still callable. Prompts: `web_research`, "
    "`summarize_conversation`. Resources: the caller's conversations (`conversation://{id}`) and stored "
    "responses (`response://{id}`), with update notifications.\n\n"
    "Both protocol eras are served: 2025-11-25 (`initialize`, then the `Mcp-Session-Id` it returns on "
    "later requests; a GET stream carries resource updates; DELETE ends the session) and 2026-07-28 "
    "(stateless: `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` headers, `server/discover`, "
    "`subscriptions/listen`). Any worker serves any request. Point MCP clients at this URL with "
    "`Authorization: Bearer <key>`."
)
_JSONRPC: dict[str, Any] = {
    "type": "object",
    "description": "One JSON-RPC 2.0 request or notification (MCP method).",
    "properties": {
        "jsonrpc": {"type": "string", "enum": ["2.0"]},
        "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "method": {
            "type": "string",
            "examples": ["initialize", "tools/list", "tools/call", "server/discover"],
        },
        "params": {"type": "object"},
    },
    "required": ["jsonrpc", "method"],
}
# The revisions with a session (initialize, a GET stream, DELETE), then the stateless ones.
SESSION_REVISIONS = list(HANDSHAKE_PROTOCOL_VERSIONS)
STATELESS_REVISIONS = list(MODERN_PROTOCOL_VERSIONS)


def _headers(revisions: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "name": "MCP-Protocol-Version",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "enum": revisions},
            "description": "The negotiated revision; 2026-07-28 requests are stateless.",
        },
        {
            "name": "Mcp-Session-Id",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "2025-11-25 only: the session id returned by `initialize`.",
        },
    ]


_ANSWER = {
    "200": {
        "description": "The JSON-RPC response (a `subscriptions/listen` answer is an event stream)",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    },
    "202": {"description": "A notification was accepted"},
}

# The MCP transport answers protocol-level refusals (no session, a method the negotiated revision
# does not serve, an unacceptable Accept header, an unknown session) the way MCP clients expect:
# a JSON-RPC error object. Refusals made before MCP sees the request use the OpenAI envelope.
_JSONRPC_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["jsonrpc", "error"],
    "properties": {
        "jsonrpc": {"type": "string", "enum": ["2.0"]},
        "id": {"type": ["string", "integer", "null"]},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {}},
        },
    },
}


def _refusal(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"anyOf": [{"$ref": "#/components/schemas/ErrorOut"}, _JSONRPC_ERROR]}
            }
        },
    }


_REFUSALS = {
    "400": _refusal("Invalid JSON-RPC message or parameters, or a session id is missing"),
    "404": _refusal("Unknown, expired or another credential's session"),
    "405": _refusal(
        "The negotiated revision does not serve this method (2026-07-28 is stateless: no GET or DELETE)"
    ),
    "406": _refusal("The Accept header does not include what the answer needs (text/event-stream)"),
}
_POST_REFUSALS = {**_REFUSALS, "413": _refusal("The body is larger than MCP_MAX_REQUEST_BYTES")}


def _operations(path: str, suffix: str) -> list[ExternalOperation]:
    return [
        ExternalOperation(
            path=path,
            method="post",
            operation_id=f"mcpPost{suffix}",
            tag="MCP",
            summary="Send an MCP message",
            description=_DESCRIPTION,
            request=_JSONRPC,
            responses={**_ANSWER, **_POST_REFUSALS},
            parameters=_headers(SESSION_REVISIONS + STATELESS_REVISIONS),
            errors=("401", "403"),
            extra_errors={"421": "Host is not allowed"},
        ),
        ExternalOperation(
            path=path,
            method="get",
            operation_id=f"mcpStream{suffix}",
            tag="MCP",
            summary="Open the session's event stream (2025-11-25)",
            description="Server-Sent Events with `notifications/resources/updated` for subscribed resources.",
            responses={
                "200": {
                    "description": "The stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **_REFUSALS,
            },
            parameters=_headers(SESSION_REVISIONS),
            errors=("401", "403"),
        ),
        ExternalOperation(
            path=path,
            method="delete",
            operation_id=f"mcpEndSession{suffix}",
            tag="MCP",
            summary="End the session (2025-11-25)",
            responses={"200": {"description": "The session and its subscriptions are gone"}, **_REFUSALS},
            parameters=_headers(SESSION_REVISIONS),
            errors=("401", "403"),
        ),
    ]


OPERATIONS = [*_operations("/v1/mcp", ""), *_operations("/v1/conv/mcp", "Conv")]
