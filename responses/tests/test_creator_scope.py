"""Within a project a stored response is its creator's alone, as conversations are: another
member, or a service account, gets 404 on every route and over MCP `response://`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from inference.models import Provider
from organizations.models import ApiKey, ProjectMember
from organizations.tests.factories import make_api_key, make_org, make_project, make_user
from responses.tests.helpers import get, post
from tests.live_server import LiveGateway
from tests.mcp_client import mcp_client

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]


@pytest.fixture
def team() -> dict[str, str]:
    """One project with two members (Alice has two keys) and a service account."""
    org = make_org()
    project = make_project(org=org)
    alice, bob = make_user(), make_user()
    for user in (alice, bob):
        ProjectMember.objects.create(project=project, user=user, role=ProjectMember.Role.MEMBER)
    return {
        "alice": make_api_key(project=project, user=alice)[1],
        "alice_other_key": make_api_key(project=project, user=alice)[1],
        "bob": make_api_key(project=project, user=bob)[1],
        "service": make_api_key(project=project, key_type=ApiKey.Type.SERVICE)[1],
    }


def _alice_response(gateway: LiveGateway, key: str) -> str:
    """A response that continues Alice's private conversation."""
    conversation = post(gateway, key, "/conversations", {"items": [{"role": "user", "content": "my secret"}]})
    assert conversation.status_code == 200, conversation.text
    created = post(
        gateway,
        key,
        "/responses",
        {"model": "fake-model", "input": "And then?", "conversation": conversation.json()["id"]},
    )
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def _routes(response_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/responses/{response_id}"),
        ("GET", f"/responses/{response_id}/input_items"),
        ("POST", f"/responses/{response_id}/cancel"),
        ("DELETE", f"/responses/{response_id}"),
    ]


def test_another_member_or_service_account_gets_404(
    live_gateway: LiveGateway, provider: Provider, team: dict[str, str]
) -> None:
    response_id = _alice_response(live_gateway, team["alice"])
    for caller in ("bob", "service"):
        for method, path in _routes(response_id):
            reply = httpx.request(
                method,
                f"{live_gateway.url}/v1{path}",
                headers={"Authorization": f"Bearer {team[caller]}"},
                timeout=15,
            )
            assert reply.status_code == 404, (caller, method, path, reply.text)
            assert reply.json()["error"]["code"] == "response_not_found"
        chained = post(
            live_gateway,
            team[caller],
            "/responses",
            {"model": "fake-model", "input": "x", "previous_response_id": response_id},
        )
        assert chained.status_code == 404, chained.text
        assert chained.json()["error"]["param"] == "previous_response_id"

    # Alice herself, through either of her keys, still has all of it.
    for key in (team["alice"], team["alice_other_key"]):
        retrieved = get(live_gateway, key, f"/responses/{response_id}")
        assert retrieved.status_code == 200, retrieved.text
        items = get(live_gateway, key, f"/responses/{response_id}/input_items")
        assert [item["content"][0]["text"] for item in items.json()["data"]] == ["And then?"]
    chained = post(
        live_gateway,
        team["alice_other_key"],
        "/responses",
        {"model": "fake-model", "input": "more", "previous_response_id": response_id},
    )
    assert chained.status_code == 200, chained.text
    deleted = httpx.delete(
        f"{live_gateway.url}/v1/responses/{response_id}",
        headers={"Authorization": f"Bearer {team['alice']}"},
        timeout=15,
    )
    assert deleted.status_code == 200, deleted.text


async def test_mcp_response_resources_follow_the_creator(
    live_gateway: LiveGateway, provider: Provider, team: dict[str, str]
) -> None:
    from gateway.background import run_sync

    response_id = await run_sync(_alice_response, live_gateway, team["alice"])
    uri = f"response://{response_id}"
    async with mcp_client(live_gateway, team["alice"]) as client:
        read: Any = await client.read_resource(uri)
    assert read.contents[0].text.startswith(f"# Response {response_id}")
    for caller in ("bob", "service"):
        async with mcp_client(live_gateway, team[caller]) as client:
            with pytest.raises(MCPError, match="Resource not found"):
                await client.read_resource(uri)
