"""The MCP Inspector CLI (`npx @modelcontextprotocol/inspector --cli`) against the live gateway,
in both eras: a third-party client listing and calling our tools, and refused without a key."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from organizations.tests.factories import make_api_key
from tests.fakes.serper import FakeSerper
from tests.live_server import GatewayProcess

pytestmark = pytest.mark.django_db(transaction=True)

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"  # pinned: the CLI's flags and exit codes
TIMEOUT = 240  # the first run downloads the package


def _skip_outside_ci(reason: str) -> None:
    """A developer without Node may skip these; CI installs Node, so there a skip would hide a break."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the MCP Inspector tests)")
    pytest.skip(reason)


def inspector(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    npx = shutil.which("npx")
    if npx is None:
        _skip_outside_ci("npx is not installed")
    env = {**os.environ, "MCP_INSPECTOR_SECRET_STORE": "memory", "NO_UPDATE_NOTIFIER": "1"}
    done = subprocess.run(
        [npx, "-y", INSPECTOR, "--cli", *args, "--format", "json", "--stored-auth-only"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env=env,
    )
    if (
        done.returncode != 0
        and not done.stdout.strip()
        and "npm" in done.stderr
        and "ERR" in done.stderr.upper()
    ):
        _skip_outside_ci(f"npx could not fetch {INSPECTOR}: {done.stderr.strip()[-300:]}")
    return done


def result_of(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    return json.loads(done.stdout)["result"]


@pytest.fixture
def key() -> str:
    return make_api_key()[1]


def test_inspector_lists_and_calls_tools_in_the_handshake_era(
    mcp_gateway: GatewayProcess, live_serper: FakeSerper, key: str, tmp_path: Path
) -> None:
    url = f"{mcp_gateway.url}/v1/mcp"
    auth = f"Authorization: Bearer {key}"
    tools = result_of(
        inspector(url, "--transport", "http", "--header", auth, "--method", "tools/list", cwd=tmp_path)
    )
    assert [tool["name"] for tool in tools["tools"]] == ["serper_search", "fetch_webpage"]
    assert tools["tools"][0]["inputSchema"]["required"] == ["q"]

    called = result_of(
        inspector(
            url,
            "--header",
            auth,
            "--method",
            "tools/call",
            "--tool-name",
            "serper_search",
            "--tool-arg",
            "q=inspector",
            cwd=tmp_path,
        )
    )
    assert called["structuredContent"]["organic"][0]["title"] == "Result about inspector"

    prompts = result_of(inspector(url, "--header", auth, "--method", "prompts/list", cwd=tmp_path))
    assert {"web_research", "summarize_conversation"} <= {p["name"] for p in prompts["prompts"]}


def test_inspector_in_the_2026_era(mcp_gateway: GatewayProcess, key: str, tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    server = {
        "type": "http",
        "url": f"{mcp_gateway.url}/v1/mcp",
        "protocolEra": "modern",
        "headers": {"Authorization": f"Bearer {key}"},
    }
    config.write_text(json.dumps({"mcpServers": {"gw": server}}))
    tools = result_of(
        inspector("--config", str(config), "--server", "gw", "--method", "tools/list", cwd=tmp_path)
    )
    assert [tool["name"] for tool in tools["tools"]] == ["serper_search", "fetch_webpage"]

    refused = inspector(
        "--config",
        str(config),
        "--server",
        "gw",
        "--method",
        "tools/call",
        "--tool-name",
        "fetch_webpage",
        "--tool-arg",
        "url=http://10.0.0.1/",
        cwd=tmp_path,
    )
    assert refused.returncode == 5  # the CLI's "tool returned isError"
    result = json.loads(refused.stdout)["result"]
    assert result["content"][0]["text"] == "The address 10.0.0.1 is not a public internet address."
    # Stamped on 2026-07-28 results only: proof the CLI spoke the stateless revision.
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "jan-gateway"


def test_inspector_without_a_key_is_refused(mcp_gateway: GatewayProcess, tmp_path: Path) -> None:
    done = inspector(f"{mcp_gateway.url}/v1/mcp", "--method", "tools/list", cwd=tmp_path)
    assert done.returncode == 3  # the CLI's "auth required"
    assert json.loads(done.stderr.strip().splitlines()[-1])["error"]["code"] == "auth_required"
