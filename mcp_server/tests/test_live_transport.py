"""The HTTP contract of /v1/mcp on the live two-worker gateway, spoken raw: authentication,
Host and Origin checks, CORS, the 2025-11-25 sessions kept in Redis, and the 2026-07-28 entry."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from organizations.models import ApiKey
from organizations.services import api_key_set_enabled
from organizations.tests.factories import make_api_key
from tests.live_server import GatewayProcess
from tests.mcp_client import mcp_client

pytestmark = pytest.mark.django_db(transaction=True)

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}


@pytest.fixture
def key() -> str:
    return make_api_key()[1]


def post(gateway: GatewayProcess, body: Any, *, key: str | None = None, **headers: str) -> httpx.Response:
    sent = {"Accept": ACCEPT, "Content-Type": "application/json", **headers}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    return httpx.post(f"{gateway.url}/v1/mcp", json=body, headers=sent, timeout=10)


# --- Authentication -------------------------------------------------------------------------


def test_no_credential_is_a_bare_401(mcp_gateway: GatewayProcess) -> None:
    response = post(mcp_gateway, INITIALIZE)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"  # no resource_metadata: no OAuth discovery
    assert response.json() == {
        "error": {
            "message": "You didn't provide an API key. Provide it in the Authorization header as 'Bearer YOUR_KEY'.",
            "type": "authentication_error",
            "param": None,
            "code": "missing_api_key",
        }
    }
    assert response.headers["x-request-id"]
    metadata = httpx.get(f"{mcp_gateway.url}/.well-known/oauth-protected-resource/v1/mcp", timeout=10)
    assert metadata.status_code == 404


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_every_method_needs_a_credential(mcp_gateway: GatewayProcess, method: str) -> None:
    response = httpx.request(method, f"{mcp_gateway.url}/v1/mcp", headers={"Accept": ACCEPT}, timeout=10)
    assert response.status_code == 401


def test_modern_requests_need_a_credential_too(mcp_gateway: GatewayProcess) -> None:
    response = post(
        mcp_gateway,
        {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}},
        **{"MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"},
    )
    assert response.status_code == 401


def test_wrong_key_and_admin_key_are_refused(mcp_gateway: GatewayProcess) -> None:
    wrong = post(mcp_gateway, INITIALIZE, key="sk-project_" + "x" * 40)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error"
    _, admin = make_api_key(key_type=ApiKey.Type.ADMIN)
    refused = post(mcp_gateway, INITIALIZE, key=admin)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_key_not_allowed"


async def test_a_jwt_works_as_the_bearer(mcp_gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=mcp_gateway.url) as http:
        login = await http.post("/v1/auth/guest-login")
    assert login.status_code in (200, 201), login.text
    token = login.json()["access_token"]
    async with mcp_client(mcp_gateway, token, mode="legacy") as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["serper_search", "fetch_webpage"]


# --- Host, Origin, CORS -------------------------------------------------------------------------


def test_host_must_be_an_allowed_host(mcp_gateway: GatewayProcess, key: str) -> None:
    refused = post(mcp_gateway, INITIALIZE, key=key, Host="evil.example.net")
    assert refused.status_code == 421
    assert refused.json()["error"]["code"] == "invalid_host"
    allowed = post(mcp_gateway, INITIALIZE, key=key, Host="gateway.example.com")
    assert allowed.status_code == 200


def test_origin_must_be_allowed(mcp_gateway: GatewayProcess, key: str) -> None:
    refused = post(mcp_gateway, INITIALIZE, key=key, Origin="https://evil.example.net")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    allowed = post(mcp_gateway, INITIALIZE, key=key, Origin="https://app.example.com")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "Mcp-Session-Id" in allowed.headers["access-control-expose-headers"]


def test_cors_preflight(mcp_gateway: GatewayProcess) -> None:
    response = httpx.options(
        f"{mcp_gateway.url}/v1/mcp",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, mcp-protocol-version",
        },
        timeout=10,
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "mcp-protocol-version" in response.headers["access-control-allow-headers"]


def test_unknown_subpath_is_a_json_404(mcp_gateway: GatewayProcess, key: str) -> None:
    response = httpx.post(
        f"{mcp_gateway.url}/v1/mcp/other", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_trailing_slash_is_served(mcp_gateway: GatewayProcess, key: str) -> None:
    response = httpx.post(
        f"{mcp_gateway.url}/v1/mcp/",
        json=INITIALIZE,
        headers={"Authorization": f"Bearer {key}", "Accept": ACCEPT},
        timeout=10,
    )
    assert response.status_code == 200


# --- 2025-11-25 sessions across workers -----------------------------------------------------


def test_sessions_are_shared_by_workers_and_bound_to_their_credential(
    mcp_gateway: GatewayProcess, key: str
) -> None:
    opened = post(mcp_gateway, INITIALIZE, key=key)
    assert opened.status_code == 200
    assert opened.headers["content-type"].startswith("application/json")
    assert opened.json()["result"]["protocolVersion"] == LEGACY
    session = opened.headers["mcp-session-id"]
    assert len(session) == 32

    # New connections each time: with two workers, both serve the session sooner or later.
    for _ in range(6):
        listed = post(
            mcp_gateway, TOOLS_LIST, key=key, **{"Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}
        )
        assert listed.status_code == 200
        assert [t["name"] for t in listed.json()["result"]["tools"]] == ["serper_search", "fetch_webpage"]

    other = make_api_key()[1]
    stolen = post(mcp_gateway, TOOLS_LIST, key=other, **{"Mcp-Session-Id": session})
    assert stolen.status_code == 404
    assert stolen.json()["error"]["message"] == "Session not found"

    ended = httpx.delete(
        f"{mcp_gateway.url}/v1/mcp",
        headers={"Authorization": f"Bearer {key}", "Mcp-Session-Id": session},
        timeout=10,
    )
    assert ended.status_code == 200
    after = post(mcp_gateway, TOOLS_LIST, key=key, **{"Mcp-Session-Id": session})
    assert after.status_code == 404


def _stream_until_closed(gateway: GatewayProcess, key: str, session: str, then: Any) -> bytes:
    """Open the session's GET stream, run `then()`, and read until the server ends the stream."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream", "Mcp-Session-Id": session}
    received = b""
    with httpx.stream("GET", f"{gateway.url}/v1/mcp", headers=headers, timeout=10) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"] == "text/event-stream"
        then()
        deadline = time.monotonic() + 8  # keep-alives come every second: never a read timeout
        for chunk in stream.iter_bytes():
            received += chunk
            assert time.monotonic() < deadline, f"the stream did not end: {received!r}"
    return received


def test_stream_ends_when_the_session_is_deleted(mcp_gateway: GatewayProcess, key: str) -> None:
    session = post(mcp_gateway, INITIALIZE, key=key).headers["mcp-session-id"]

    def delete() -> None:
        headers = {"Authorization": f"Bearer {key}", "Mcp-Session-Id": session}
        assert httpx.delete(f"{mcp_gateway.url}/v1/mcp", headers=headers, timeout=10).status_code == 200

    assert _stream_until_closed(mcp_gateway, key, session, delete).startswith(b": stream open\n\n")


def test_stream_ends_when_the_key_is_disabled(mcp_gateway: GatewayProcess) -> None:
    row, raw = make_api_key()
    session = post(mcp_gateway, INITIALIZE, key=raw).headers["mcp-session-id"]
    _stream_until_closed(mcp_gateway, raw, session, lambda: api_key_set_enabled(key=row, enabled=False))
    assert post(mcp_gateway, TOOLS_LIST, key=raw, **{"Mcp-Session-Id": session}).status_code == 401


def test_unknown_session_and_stream_without_session(mcp_gateway: GatewayProcess, key: str) -> None:
    unknown = post(mcp_gateway, TOOLS_LIST, key=key, **{"Mcp-Session-Id": "0" * 32})
    assert unknown.status_code == 404
    stream = httpx.get(
        f"{mcp_gateway.url}/v1/mcp",
        headers={"Authorization": f"Bearer {key}", "Accept": "text/event-stream"},
        timeout=10,
    )
    assert stream.status_code == 400
    not_sse = httpx.get(f"{mcp_gateway.url}/v1/mcp", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert not_sse.status_code in (400, 406)


def test_sessionless_legacy_calls_work(mcp_gateway: GatewayProcess, key: str) -> None:
    # Stateless clients (and jan-server's) call tools without a session; only subscribe needs one.
    response = post(mcp_gateway, TOOLS_LIST, key=key, **{"MCP-Protocol-Version": LEGACY})
    assert response.status_code == 200
    assert "mcp-session-id" not in response.headers
    subscribe = post(
        mcp_gateway,
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "resources/subscribe",
            "params": {"uri": "conversation://conv_x"},
        },
        key=key,
    )
    assert subscribe.json()["error"]["message"].startswith("resources/subscribe needs a session")


def test_notifications_are_accepted(mcp_gateway: GatewayProcess, key: str) -> None:
    response = post(mcp_gateway, {"jsonrpc": "2.0", "method": "notifications/initialized"}, key=key)
    assert response.status_code == 202


def test_oversized_body_is_refused(mcp_gateway: GatewayProcess, key: str) -> None:
    big = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "x", "arguments": {"q": "x" * 5_000_000}},
    }
    assert post(mcp_gateway, big, key=key).status_code == 413


# --- 2026-07-28 -------------------------------------------------------------------------------


def test_server_discover(mcp_gateway: GatewayProcess, key: str) -> None:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    response = post(
        mcp_gateway,
        {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}},
        key=key,
        **{"MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"},
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["supportedVersions"] == [MODERN]
    assert set(result["capabilities"]) >= {"tools", "prompts", "resources"}
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "jan-gateway"
    assert "mcp-session-id" not in response.headers


def test_other_methods_are_not_allowed(mcp_gateway: GatewayProcess, key: str) -> None:
    response = httpx.put(f"{mcp_gateway.url}/v1/mcp", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 405
    assert response.json()["error"]["message"] == "Method PUT is not allowed on /v1/mcp."
    assert response.headers["Allow"] == "GET, POST, DELETE, OPTIONS"
    stateless = httpx.get(
        f"{mcp_gateway.url}/v1/mcp",
        headers={"Authorization": f"Bearer {key}", "MCP-Protocol-Version": MODERN},
        timeout=10,
    )
    assert (stateless.status_code, stateless.headers["Allow"]) == (405, "POST, OPTIONS")
    assert stateless.json()["error"]["code"] == -32600


def test_the_seeds_prompts_call_is_prompts_get(mcp_gateway: GatewayProcess, key: str) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "prompts/call",
        "params": {"name": "web_research", "arguments": {"topic": "tides"}},
    }
    response = post(mcp_gateway, call, key=key)
    assert response.status_code == 200
    assert response.json()["result"]["description"] == "Web research: tides"
