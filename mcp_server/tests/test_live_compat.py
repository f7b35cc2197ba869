"""What the MCP conformance suite found, spoken raw to the live two-worker gateway: same-origin
pages are accepted (foreign and rebinding origins are not), `logging` (setLevel, then log
notifications of tool calls on the session's stream) and `completions` are declared and work."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import orjson
import pytest

from organizations.tests.factories import make_api_key
from tests.live_server import GatewayProcess

pytestmark = pytest.mark.django_db(transaction=True)

LEGACY = "2025-11-25"
ACCEPT = "application/json, text/event-stream"


def _initialize(request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }


def _post(gateway: GatewayProcess, body: Any, key: str, **headers: str) -> httpx.Response:
    sent = {"Accept": ACCEPT, "Content-Type": "application/json", "Authorization": f"Bearer {key}", **headers}
    return httpx.post(f"{gateway.url}/v1/mcp", json=body, headers=sent, timeout=10)


def _session(gateway: GatewayProcess, key: str) -> tuple[str, dict[str, Any]]:
    answer = _post(gateway, _initialize(), key)
    assert answer.status_code == 200, answer.text
    session = answer.headers["mcp-session-id"]
    headers = {"Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}
    notified = _post(gateway, {"jsonrpc": "2.0", "method": "notifications/initialized"}, key, **headers)
    assert notified.status_code == 202
    return session, answer.json()["result"]


def _call(
    gateway: GatewayProcess, key: str, session: str, method: str, params: dict[str, Any]
) -> dict[str, Any]:
    headers = {"Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}
    answer = _post(gateway, {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}, key, **headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture
def key() -> str:
    return make_api_key()[1]


def test_same_origin_is_accepted_and_foreign_origins_are_not(mcp_gateway: GatewayProcess, key: str) -> None:
    port = int(mcp_gateway.url.rsplit(":", 1)[1])
    own = f"http://127.0.0.1:{port}"
    accepted = _post(mcp_gateway, _initialize(), key, Origin=own)
    assert accepted.status_code == 200, accepted.text
    also = _post(mcp_gateway, _initialize(), key, Origin=f"http://localhost:{port}", Host=f"localhost:{port}")
    assert also.status_code == 200, also.text
    for origin, host in [
        (f"http://127.0.0.1:{port + 1}", None),  # another port is another origin
        (f"https://127.0.0.1:{port}", None),  # another scheme too
        ("http://evil.example.com", None),
        ("http://gateway.example.com", f"localhost:{port}"),
    ]:
        extra = {"Origin": origin, **({"Host": host} if host else {})}
        refused = _post(mcp_gateway, _initialize(), key, **extra)
        assert refused.status_code == 403, (origin, refused.text)
        assert refused.json()["error"]["code"] == "origin_not_allowed"
    # DNS rebinding, as the conformance suite sends it: a Host that is not ours is refused first.
    rebinding = _post(
        mcp_gateway, _initialize(), key, Origin="http://evil.example.com", Host="evil.example.com"
    )
    assert 400 <= rebinding.status_code < 500


def test_logging_and_completions_are_declared(mcp_gateway: GatewayProcess, key: str) -> None:
    _session_id, result = _session(mcp_gateway, key)
    assert result["capabilities"]["logging"] == {}
    assert result["capabilities"]["completions"] == {}


def test_set_level_then_tool_calls_log_on_the_session_stream(
    mcp_gateway: GatewayProcess, key: str, serper_reset: Any
) -> None:
    session, _ = _session(mcp_gateway, key)
    assert _call(mcp_gateway, key, session, "logging/setLevel", {"level": "info"})["result"] == {}
    received: list[dict[str, Any]] = []
    opened = threading.Event()

    def listen() -> None:
        headers = {
            "Accept": "text/event-stream",
            "Authorization": f"Bearer {key}",
            "Mcp-Session-Id": session,
            "MCP-Protocol-Version": LEGACY,
        }
        with httpx.stream("GET", f"{mcp_gateway.url}/v1/mcp", headers=headers, timeout=20) as stream:
            for line in stream.iter_lines():
                opened.set()
                if line.startswith("data: "):
                    received.append(orjson.loads(line[len("data: ") :]))
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(10)
    called = _call(
        mcp_gateway, key, session, "tools/call", {"name": "serper_search", "arguments": {"q": "mcp"}}
    )
    assert called["result"]["isError"] is False
    listener.join(15)
    assert received, "no log notification arrived"
    message = received[0]
    assert message["method"] == "notifications/message"
    assert message["params"]["level"] == "info"
    assert message["params"]["data"]["tool"] == "serper_search"
    assert message["params"]["data"]["event"] == "finished"  # the debug "started" is below info


def _complete(
    gateway: GatewayProcess, key: str, session: str, ref: dict[str, Any], name: str, value: str
) -> list[str]:
    params = {"ref": ref, "argument": {"name": name, "value": value}}
    answer = _call(gateway, key, session, "completion/complete", params)
    values: list[str] = answer["result"]["completion"]["values"]
    return values


def test_completion_offers_the_callers_conversation_ids(mcp_gateway: GatewayProcess) -> None:
    _mine_key, raw = make_api_key()
    mine = []
    for _ in range(2):
        created = httpx.post(
            f"{mcp_gateway.url}/v1/conversations",
            json={},
            headers={"Authorization": f"Bearer {raw}"},
            timeout=10,
        )
        assert created.status_code == 200, created.text
        mine.append(created.json()["id"])
    _other_key, other_raw = make_api_key()
    session, _ = _session(mcp_gateway, raw)
    ref = {"type": "ref/prompt", "name": "summarize_conversation"}
    assert sorted(_complete(mcp_gateway, raw, session, ref, "conversation_id", "conv_")) == sorted(mine)
    assert _complete(mcp_gateway, raw, session, ref, "conversation_id", mine[0][:14]) == [mine[0]]
    other_session, _ = _session(mcp_gateway, other_raw)
    assert _complete(mcp_gateway, other_raw, other_session, ref, "conversation_id", "") == []
    template = {"type": "ref/resource", "uri": "conversation://{conversation_id}"}
    assert sorted(_complete(mcp_gateway, raw, session, template, "conversation_id", "")) == sorted(mine)
    unknown = {"type": "ref/prompt", "name": "test_prompt_with_arguments"}
    assert _complete(mcp_gateway, raw, session, unknown, "arg1", "test") == []
    research = {"type": "ref/prompt", "name": "web_research"}
    assert _complete(mcp_gateway, raw, session, research, "sources", "1") == ["1", "10"]
