"""Conversations as MCP resources on the live two-worker gateway, in both eras: list, templates,
read (markdown + JSON), the summarize_conversation prompt, project isolation, and update
notifications (legacy resources/subscribe on the session's GET stream; 2026-07-28
subscriptions/listen) for items added by another process."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from accounts.auth import Principal, principal_from_headers
from conversations import services as conversation_services
from conversations.models import Conversation
from gateway.background import run_sync
from organizations.tests.factories import make_api_key
from tests.live_server import GatewayProcess
from tests.mcp_client import mcp_client

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # resources/subscribe is deprecated from 2026-07-28 but is what 2025-11-25 clients speak.
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

# A raw 2025-11-25 initialize, for the tests that drive sessions by hand.
LEGACY_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}

ERAS = ["legacy", "auto"]


@dataclass
class Caller:
    key: str
    principal: Principal


def caller() -> Caller:
    _, raw = make_api_key()
    return Caller(raw, principal_from_headers({"Authorization": f"Bearer {raw}"}))


def add_items(conversation: Conversation, *texts: tuple[str, str]) -> None:
    conversation_services.items_create(
        conversation=conversation,
        items=[{"type": "message", "role": role, "content": text} for role, text in texts],
    )


@pytest.fixture
def alice() -> Caller:
    return caller()


@pytest.fixture
def mallory() -> Caller:
    return caller()  # another organization and project


@pytest.fixture
def alice_conversations(alice: Caller) -> list[Conversation]:
    older = conversation_services.conversation_create(principal=alice.principal, title="Birds")
    add_items(older, ("user", "Which birds dive for fish?"), ("assistant", "Kingfishers and gannets."))
    newer = conversation_services.conversation_create(principal=alice.principal, metadata={"topic": "otters"})
    return [older, newer]


@pytest.fixture
def mallory_conversation(mallory: Caller) -> Conversation:
    conversation = conversation_services.conversation_create(principal=mallory.principal, title="Secret")
    add_items(conversation, ("user", "the launch code is 0000"))
    return conversation


@pytest.mark.parametrize("mode", ERAS)
async def test_list_templates_and_read(
    mcp_gateway: GatewayProcess,
    alice: Caller,
    alice_conversations: list[Conversation],
    mallory_conversation: Conversation,
    mode: str,
) -> None:
    older, newer = alice_conversations
    async with mcp_client(mcp_gateway, alice.key, mode=mode) as client:
        listed = (await client.list_resources()).resources
        templates = (await client.list_resource_templates()).resource_templates
        read = await client.read_resource(f"conversation://{older.public_id}")

    assert [r.uri for r in listed] == [
        f"conversation://{newer.public_id}",
        f"conversation://{older.public_id}",
    ]
    assert listed[1].title == "Birds"
    assert all(r.mime_type == "text/markdown" for r in listed)
    assert "conversation://{conversation_id}" in [t.uri_template for t in templates]

    markdown, document = read.contents
    assert isinstance(markdown, types.TextResourceContents)
    assert isinstance(document, types.TextResourceContents)
    assert markdown.mime_type == "text/markdown"
    assert markdown.text.startswith(f"# Conversation {older.public_id}: Birds\n")
    assert "### user\n\nWhich birds dive for fish?" in markdown.text
    assert "### assistant\n\nKingfishers and gannets." in markdown.text
    assert document.mime_type == "application/json"
    body = json.loads(document.text)
    assert body["conversation"]["id"] == older.public_id
    assert [item["role"] for item in body["items"]] == ["user", "assistant"]
    assert body["items"][0]["type"] == "message"


@pytest.mark.parametrize("mode", ERAS)
async def test_another_projects_conversation_is_not_found(
    mcp_gateway: GatewayProcess, alice: Caller, mallory_conversation: Conversation, mode: str
) -> None:
    uri = f"conversation://{mallory_conversation.public_id}"
    async with mcp_client(mcp_gateway, alice.key, mode=mode) as client:
        assert (await client.list_resources()).resources == []
        with pytest.raises(MCPError, match="Resource not found") as read:
            await client.read_resource(uri)
        with pytest.raises(MCPError, match="Conversation not found"):
            await client.get_prompt(
                "summarize_conversation", {"conversation_id": mallory_conversation.public_id}
            )
        with pytest.raises(MCPError, match="Resource not found"):
            await client.read_resource("conversation://conv_doesnotexist")
        with pytest.raises(MCPError, match="Resource not found"):
            await client.read_resource("file:///etc/passwd")
    assert read.value.error.code == types.INVALID_PARAMS
    assert "0000" not in str(read.value)


@pytest.mark.parametrize("mode", ERAS)
async def test_summarize_conversation_prompt(
    mcp_gateway: GatewayProcess, alice: Caller, alice_conversations: list[Conversation], mode: str
) -> None:
    older = alice_conversations[0]
    async with mcp_client(mcp_gateway, alice.key, mode=mode) as client:
        result = await client.get_prompt("summarize_conversation", {"conversation_id": older.public_id})
    text = result.messages[0].content.text  # type: ignore[union-attr]
    assert text.startswith("Summarize the conversation below.")
    assert f"# Conversation {older.public_id}: Birds" in text
    assert "Kingfishers and gannets." in text


async def add_items_via_rest(
    gateway: GatewayProcess, who: Caller, conversation: Conversation, text: str
) -> None:
    """The REST API of the same live gateway: whichever worker takes it sends items_added."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        response = await http.post(
            f"/v1/conversations/{conversation.public_id}/items",
            json={"items": [{"type": "message", "role": "user", "content": text}]},
            headers={"Authorization": f"Bearer {who.key}"},
        )
    assert response.status_code == 200, response.text


async def _wait_for(queue: asyncio.Queue[str], expected: str) -> None:
    async with asyncio.timeout(10):
        while (await queue.get()) != expected:
            pass


async def test_legacy_subscribe_gets_updates_on_the_session_stream(
    mcp_gateway: GatewayProcess,
    alice: Caller,
    alice_conversations: list[Conversation],
    mallory_conversation: Conversation,
) -> None:
    older, newer = alice_conversations
    updates: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.put_nowait(str(message.params.uri))

    async with mcp_client(mcp_gateway, alice.key, mode="legacy", message_handler=on_message) as client:
        uri = f"conversation://{older.public_id}"
        await client.subscribe_resource(uri)
        with pytest.raises(MCPError, match="Resource not found"):
            await client.subscribe_resource(f"conversation://{mallory_conversation.public_id}")
        await asyncio.sleep(1.0)  # the GET stream opens after notifications/initialized

        # Items added through the REST API; the update travels through Redis to whichever
        # worker holds the stream. Then once more from another process (this test's).
        await add_items_via_rest(mcp_gateway, alice, newer, "not subscribed")
        await add_items_via_rest(mcp_gateway, alice, older, "And herons?")
        await _wait_for(updates, uri)
        await run_sync(add_items, older, ("user", "And storks?"))
        await _wait_for(updates, uri)
        assert updates.empty()  # nothing for the unsubscribed conversation

        await client.unsubscribe_resource(uri)
        await run_sync(add_items, older, ("user", "quiet now"))
        await asyncio.sleep(1.5)
        assert updates.empty()


async def test_modern_listen_gets_updates(
    mcp_gateway: GatewayProcess,
    alice: Caller,
    alice_conversations: list[Conversation],
    mallory_conversation: Conversation,
) -> None:
    older, newer = alice_conversations
    uri = f"conversation://{older.public_id}"
    async with mcp_client(mcp_gateway, alice.key) as client:
        assert client.session.protocol_version == "2026-07-28"
        with pytest.raises(MCPError, match="Resource not found"):
            async with client.listen(
                resource_subscriptions=[f"conversation://{mallory_conversation.public_id}"]
            ):
                pass
        async with client.listen(resource_subscriptions=[uri]) as subscription:
            await add_items_via_rest(mcp_gateway, alice, newer, "not subscribed")
            await add_items_via_rest(mcp_gateway, alice, older, "And herons?")
            async with asyncio.timeout(10):
                event = await anext(aiter(subscription))
    assert getattr(event, "uri", None) == uri


def make_response(who: Caller, text: str) -> str:
    from responses.models import Response

    row = Response.objects.create(
        organization_id=who.principal.organization_id,
        project_id=who.principal.project_id,
        user_id=who.principal.user_id,  # a response is its creator's alone
        model="fake-model",
        status=Response.Status.COMPLETED,
        output=[
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
    )
    return row.public_id


@pytest.mark.parametrize("mode", ERAS)
async def test_stored_responses_are_resources(
    mcp_gateway: GatewayProcess, alice: Caller, mallory: Caller, mode: str
) -> None:
    mine = await run_sync(make_response, alice, "Kingfishers dive.")
    theirs = await run_sync(make_response, mallory, "secret answer")
    async with mcp_client(mcp_gateway, alice.key, mode=mode) as client:
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        read = await client.read_resource(f"response://{mine}")
        with pytest.raises(MCPError, match="Resource not found"):
            await client.read_resource(f"response://{theirs}")
    assert "response://{response_id}" in templates
    markdown, document = read.contents
    assert isinstance(markdown, types.TextResourceContents)
    assert isinstance(document, types.TextResourceContents)
    assert markdown.text.startswith(f"# Response {mine}\nModel: fake-model\nStatus: completed\n")
    assert "### assistant\n\nKingfishers dive." in markdown.text
    assert json.loads(document.text)["response"]["id"] == mine


async def test_a_session_spans_replicas(
    mcp_gateway: GatewayProcess,
    mcp_gateway_replica: GatewayProcess,
    alice: Caller,
    alice_conversations: list[Conversation],
) -> None:
    """Deterministically across processes: the session is opened on replica A, used and
    subscribed on replica B, its stream held by A, the item added through B's REST API,
    and the session ended on B, which closes A's stream."""
    a, b = mcp_gateway, mcp_gateway_replica
    uri = f"conversation://{alice_conversations[0].public_id}"
    auth = {"Authorization": f"Bearer {alice.key}", "Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(headers=auth, timeout=10) as http:
        opened = await http.post(f"{a.url}/v1/mcp", json=LEGACY_INITIALIZE)
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        subscribe = {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": uri}}
        subscribed = await http.post(f"{b.url}/v1/mcp", json=subscribe, headers=session)
        assert subscribed.json() == {"jsonrpc": "2.0", "id": 2, "result": {}}

        received = b""
        stream_headers = {**session, "Accept": "text/event-stream"}
        async with http.stream("GET", f"{a.url}/v1/mcp", headers=stream_headers) as stream:
            assert stream.status_code == 200
            await add_items_via_rest(b, alice, alice_conversations[0], "Seen from replica A?")
            chunks = stream.aiter_bytes()
            async with asyncio.timeout(10):
                while b"notifications/resources/updated" not in received:
                    received += await anext(chunks)
            event = next(line for line in received.split(b"\n") if line.startswith(b"data: "))
            assert json.loads(event[6:]) == {
                "jsonrpc": "2.0",
                "method": "notifications/resources/updated",
                "params": {"uri": uri},
            }
            assert (await http.delete(f"{b.url}/v1/mcp", headers=session)).status_code == 200
            async with asyncio.timeout(8):  # A notices at its next keep-alive (1 s here)
                async for _ in chunks:
                    pass
        assert (await http.post(f"{a.url}/v1/mcp", json=subscribe, headers=session)).status_code == 404


async def test_modern_listen_ends_when_the_key_is_disabled(mcp_gateway: GatewayProcess) -> None:
    from organizations.services import api_key_set_enabled

    row, raw = await run_sync(make_api_key)
    async with (
        mcp_client(mcp_gateway, raw) as client,
        client.listen(resources_list_changed=True) as subscription,
    ):
        await run_sync(api_key_set_enabled, key=row, enabled=False)
        async with asyncio.timeout(8):  # checked at every keep-alive (1 s here)
            events = [event async for event in subscription]
    assert events == []  # closed gracefully by the server, nothing delivered


def _org_key_in_two_projects() -> tuple[str, str, str, Conversation]:
    """An organization key, two projects of its organization, and a conversation in the first."""
    from organizations.models import ApiKey
    from organizations.tests.factories import make_org, make_project

    org = make_org()
    first, second = make_project(org=org), make_project(org=org)
    _, raw = make_api_key(org=org, key_type=ApiKey.Type.ORGANIZATION)
    principal = principal_from_headers({"Authorization": f"Bearer {raw}", "OpenAI-Project": first.public_id})
    conversation = conversation_services.conversation_create(principal=principal, title="Project A only")
    return raw, first.public_id, second.public_id, conversation


async def test_one_key_in_two_projects_sees_each_projects_own_resources_and_sessions(
    mcp_gateway: GatewayProcess,
) -> None:
    raw, first, second, conversation = await run_sync(_org_key_in_two_projects)
    uri = f"conversation://{conversation.public_id}"
    async with mcp_client(mcp_gateway, raw, mode="legacy", headers={"OpenAI-Project": first}) as client:
        assert [r.uri for r in (await client.list_resources()).resources] == [uri]
    async with mcp_client(mcp_gateway, raw, mode="legacy", headers={"OpenAI-Project": second}) as client:
        assert (await client.list_resources()).resources == []
        with pytest.raises(MCPError, match="Resource not found"):
            await client.read_resource(uri)

    # A session belongs to the key *in its project*: the same key elsewhere cannot use it.
    base = {"Authorization": f"Bearer {raw}", "Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=mcp_gateway.url, headers=base, timeout=10) as http:
        opened = await http.post("/v1/mcp", json=LEGACY_INITIALIZE, headers={"OpenAI-Project": first})
        session = opened.headers["mcp-session-id"]
        elsewhere = await http.post(
            "/v1/mcp",
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            headers={"OpenAI-Project": second, "Mcp-Session-Id": session},
        )
    assert elsewhere.status_code == 404
