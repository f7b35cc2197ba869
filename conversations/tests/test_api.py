"""The Conversations API through the official openai SDK (strict validation) against a live
gateway, bodies checked against OpenAI's spec; contract details through raw HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest
from rest_framework.test import APIClient

from conversations.models import Conversation, Item
from organizations.models import ApiKey
from organizations.tests.factories import make_api_key, make_project
from tests.live_server import LiveGateway
from tests.openai_spec import assert_valid

pytestmark = pytest.mark.django_db(transaction=True)


def _dump(obj: object) -> dict:  # type: ignore[type-arg]
    return obj.model_dump(mode="json", exclude_unset=True)  # type: ignore[attr-defined]


def _http(gateway: LiveGateway, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"{gateway.url}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_crud_through_the_sdk(sdk: openai.OpenAI) -> None:
    created = sdk.conversations.create(
        items=[{"type": "message", "role": "user", "content": "Hello!"}], metadata={"topic": "demo"}
    )
    assert created.id.startswith("conv_")
    assert created.object == "conversation"
    assert created.metadata == {"topic": "demo"}
    assert_valid("ConversationResource", _dump(created))

    fetched = sdk.conversations.retrieve(created.id)
    assert fetched.id == created.id
    assert fetched.created_at == created.created_at

    updated = sdk.conversations.update(created.id, metadata={"topic": "changed"})
    assert updated.metadata == {"topic": "changed"}  # replaced, not merged
    assert_valid("ConversationResource", _dump(updated))

    items = sdk.conversations.items.list(created.id)
    assert [item.type for item in items.data] == ["message"]
    assert items.data[0].content[0].text == "Hello!"  # type: ignore[union-attr]
    assert_valid("ConversationItemList", _dump(items))

    deleted = sdk.conversations.delete(created.id)
    assert deleted.deleted is True
    assert deleted.id == created.id
    assert deleted.object == "conversation.deleted"
    assert_valid("DeletedConversationResource", _dump(deleted))
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.conversations.retrieve(created.id)
    assert caught.value.code == "conversation_not_found"
    assert_valid("ErrorResponse", caught.value.body and {"error": caught.value.body})
    assert Item.objects.filter(conversation__public_id=created.id).count() == 1  # items are kept


def test_items_create_retrieve_and_delete_returns_the_conversation(sdk: openai.OpenAI) -> None:
    conversation = sdk.conversations.create()
    empty = sdk.conversations.items.list(conversation.id)
    assert empty.data == []
    assert empty.has_more is False
    created = sdk.conversations.items.create(
        conversation.id,
        items=[
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What's 2+2?"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "4"}]},
            {"type": "function_call", "call_id": "call_1", "name": "calc", "arguments": '{"x":2}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "4"},
        ],
        include=["message.output_text.logprobs"],
    )
    assert_valid("ConversationItemList", _dump(created))
    assert [item.type for item in created.data] == [
        "message",
        "message",
        "function_call",
        "function_call_output",
    ]
    assert created.first_id == created.data[0].id
    assert created.last_id == created.data[-1].id
    assert created.has_more is False
    assistant = created.data[1]
    for item in created.data:
        assert_valid("ConversationItem", _dump(item))

    fetched = sdk.conversations.items.retrieve(assistant.id, conversation_id=conversation.id)
    assert fetched.id == assistant.id
    assert fetched.content[0].type == "output_text"  # type: ignore[union-attr]

    after_delete = sdk.conversations.items.delete(assistant.id, conversation_id=conversation.id)
    assert after_delete.object == "conversation"
    assert after_delete.id == conversation.id
    assert_valid("ConversationResource", _dump(after_delete))
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.conversations.items.retrieve(assistant.id, conversation_id=conversation.id)
    assert caught.value.code == "item_not_found"
    remaining = [item.id for item in sdk.conversations.items.list(conversation.id, order="asc")]
    assert remaining == [created.data[0].id, created.data[2].id, created.data[3].id]


def test_auto_pager_sees_each_item_once(sdk: openai.OpenAI) -> None:
    conversation = sdk.conversations.create()
    for batch in range(3):
        sdk.conversations.items.create(
            conversation.id,
            items=[{"role": "user", "content": f"message {batch * 20 + n}"} for n in range(20)],
        )
    newest_first = [item.content[0].text for item in sdk.conversations.items.list(conversation.id, limit=7)]  # type: ignore[union-attr]
    assert newest_first == [f"message {n}" for n in reversed(range(60))]
    oldest_first = [item.id for item in sdk.conversations.items.list(conversation.id, limit=9, order="asc")]
    assert len(oldest_first) == len(set(oldest_first)) == 60
    page = sdk.conversations.items.list(conversation.id, limit=100)
    assert page.has_more is False
    assert len(page.data) == 60


def test_create_limits_and_nothing_half_written(live_gateway: LiveGateway, project_key, settings) -> None:  # type: ignore[no-untyped-def]
    # The live server runs in this process, so the setting applies to it (the default, 10 MiB
    # like OpenAI's, does not fit in a request body Django accepts).
    settings.CONVERSATIONS_MAX_TEXT_CHARS = 1000
    with _http(live_gateway, project_key[1]) as client:
        too_many = client.post("/conversations", json={"items": [{"role": "user", "content": "x"}] * 21})
        assert too_many.status_code == 400
        assert too_many.json()["error"]["param"] == "items"
        assert_valid("ErrorResponse", too_many.json())

        bad_role = client.post(
            "/conversations",
            json={"items": [{"role": "user", "content": "ok"}, {"role": "wizard", "content": "x"}]},
        )
        assert bad_role.json()["error"]["param"] == "items[1].role"

        bad_type = client.post("/conversations", json={"items": [{"type": "mystery"}]})
        assert bad_type.json()["error"]["param"] == "items[0].type"

        bad_metadata = client.post("/conversations", json={"metadata": {"k": "v" * 513}})
        assert bad_metadata.status_code == 400
        assert bad_metadata.json()["error"]["param"] == "metadata.k"

        long_text = client.post(
            "/conversations",
            json={"items": [{"role": "user", "content": "ok"}, {"role": "user", "content": "x" * 1001}]},
        )
        assert long_text.status_code == 400
        assert long_text.json()["error"]["param"] == "items[1].content"
        assert long_text.json()["error"]["code"] == "string_above_max_length"
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
        too_big = client.post("/conversations", json={"items": [{"role": "user", "content": "x" * 3000}]})
        assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "request_too_large")
    assert Conversation.objects.count() == 0
    assert Item.objects.count() == 0


def test_items_bad_input(live_gateway: LiveGateway, project_key) -> None:  # type: ignore[no-untyped-def]
    with _http(live_gateway, project_key[1]) as client:
        conversation = client.post("/conversations", json={}).json()
        url = f"/conversations/{conversation['id']}/items"
        assert (
            client.post(url, json={"items": [{"role": "user", "content": "x"}] * 21}).json()["error"]["param"]
            == "items"
        )
        missing = client.post(url, json={})
        assert (missing.status_code, missing.json()["error"]["param"]) == (400, "items")
        bad_cursor = client.get(url, params={"after": "msg_doesnotexist"})
        assert (bad_cursor.status_code, bad_cursor.json()["error"]["param"]) == (400, "after")
        bad_limit = client.get(url, params={"limit": "0"})
        assert (bad_limit.status_code, bad_limit.json()["error"]["param"]) == (400, "limit")
        bad_include = client.get(url, params={"include[]": "everything"})
        assert (bad_include.status_code, bad_include.json()["error"]["param"]) == (400, "include")
        unknown = client.get("/conversations/conv_nope/items")
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "conversation_not_found")
        unknown_item = client.get(f"{url}/msg_nope")
        assert (unknown_item.status_code, unknown_item.json()["error"]["code"]) == (404, "item_not_found")
        no_update = client.post(f"/conversations/{conversation['id']}", json={})
        assert (no_update.status_code, no_update.json()["error"]["param"]) == (400, "metadata")
    assert Item.objects.count() == 0


def test_items_the_document_refuses_are_refused(live_gateway: LiveGateway, project_key) -> None:  # type: ignore[no-untyped-def]
    """Found by Schemathesis (gateway/tests/test_schemathesis.py): each was stored, or a 500."""
    text = {"type": "output_text", "text": "hi"}
    cases = [
        ({"items": {}}, "items", "invalid_type"),
        ({"items": [{"role": "user", "content": "a\u0000b"}]}, "items[0].content", "invalid_value"),
        ({"metadata": {"k\u0000": "v"}}, "metadata", "invalid_value"),
        ({"items": [{"role": "user", "content": "x", "id": 5}]}, "items[0].id", "invalid_type"),
        (
            {"items": [{"role": "assistant", "content": [{**text, "annotations": [{"type": {}}]}]}]},
            "items[0].content[0].annotations[0].type",
            "invalid_value",
        ),
        (
            {"items": [{"role": "assistant", "content": [{**text, "logprobs": [{"token": "t"}]}]}]},
            "items[0].content[0].logprobs[0].logprob",
            "invalid_type",
        ),
        (
            {"items": [{"role": "user", "content": [{"type": "input_image", "image_url": "not a url"}]}]},
            "items[0].content[0].image_url",
            "invalid_url",
        ),
        (
            {
                "items": [
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "image_url": "https://a.b/c.png", "detail": 0}],
                    }
                ]
            },
            "items[0].content[0].detail",
            "invalid_value",
        ),
    ]
    with _http(live_gateway, project_key[1]) as client:
        for body, param, code in cases:
            response = client.post("/conversations", json=body)
            assert response.status_code == 400, (body, response.text)
            assert (response.json()["error"]["param"], response.json()["error"]["code"]) == (param, code), (
                body
            )
        # What the document allows is stored: a reasoning item without a summary, a data URL, big
        # token ids (orjson reads integers beyond 64 bits as floats: JSON Schema's integer all the same).
        logprob = {"token": "t", "logprob": -0.5, "bytes": [2**70], "top_logprobs": []}
        stored = client.post(
            "/conversations",
            json={
                "items": [
                    {"type": "reasoning"},
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "image_url": "data:image/png;base64,iVBO"}],
                    },
                    {"role": "assistant", "content": [{**text, "annotations": [], "logprobs": [logprob]}]},
                ]
            },
        )
        assert stored.status_code == 200, stored.text
        items = client.get(f"/conversations/{stored.json()['id']}/items", params={"order": "asc"}).json()
        assert_valid("ConversationItemList", items)
        assert items["data"][0]["summary"] == []
    assert Conversation.objects.count() == 1


def test_jan_list_title_and_patch(live_gateway: LiveGateway, project_key) -> None:  # type: ignore[no-untyped-def]
    with _http(live_gateway, project_key[1]) as client:
        first = client.post("/conversations", json={"title": "First"}).json()
        second = client.post("/conversations", json={"title": "Second"}).json()
        assert first["title"] == "First"
        listed = client.get("/conversations").json()
        assert [c["id"] for c in listed["data"]] == [second["id"], first["id"]]
        assert listed["object"] == "list"
        assert listed["has_more"] is False
        paged = client.get("/conversations", params={"limit": 1, "last": second["id"]}).json()
        assert [c["id"] for c in paged["data"]] == [first["id"]]
        patched = client.patch(f"/conversations/{first['id']}", json={"title": "Renamed"})
        assert patched.status_code == 200
        assert patched.json()["title"] == "Renamed"
        assert patched.json()["metadata"] == {}


def test_another_project_or_creator_gets_404_everywhere(live_gateway: LiveGateway, project_key) -> None:  # type: ignore[no-untyped-def]
    owner_key = project_key[0]
    with _http(live_gateway, project_key[1]) as client:
        conversation = client.post(
            "/conversations", json={"items": [{"role": "user", "content": "secret"}]}
        ).json()
        item_id = client.get(f"/conversations/{conversation['id']}/items").json()["data"][0]["id"]

    other_project = make_project(org=owner_key.organization)
    _, elsewhere = make_api_key(project=other_project, user=owner_key.owner_user)
    _, service = make_api_key(project=owner_key.project, key_type=ApiKey.Type.SERVICE)
    _, other_org = make_api_key()
    base = f"/conversations/{conversation['id']}"
    routes = [
        ("GET", base, None),
        ("POST", base, {"metadata": {"a": "b"}}),
        ("PATCH", base, {"title": "mine"}),
        ("DELETE", base, None),
        ("GET", f"{base}/items", None),
        ("POST", f"{base}/items", {"items": [{"role": "user", "content": "x"}]}),
        ("GET", f"{base}/items/{item_id}", None),
        ("DELETE", f"{base}/items/{item_id}", None),
    ]
    for key in (elsewhere, service, other_org):
        with _http(live_gateway, key) as client:
            for method, url, body in routes:
                response = client.request(method, url, json=body)
                assert response.status_code == 404, (method, url)
                assert response.json()["error"]["code"] == "conversation_not_found"
            assert client.get("/conversations").json()["data"] == []
    assert Item.objects.count() == 1
    assert Conversation.objects.get().deleted_at is None


def test_list_endpoints_run_a_constant_number_of_queries(django_assert_num_queries, project_key) -> None:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {project_key[1]}")
    conversation_id = client.post("/v1/conversations", {}, format="json").json()["id"]
    client.get("/v1/conversations")  # warm the key cache

    def count(url: str) -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as context:
            assert client.get(url).status_code == 200
        return len(context.captured_queries)

    small = count(f"/v1/conversations/{conversation_id}/items")
    convs_small = count("/v1/conversations")
    for n in range(3):
        client.post(
            f"/v1/conversations/{conversation_id}/items",
            {"items": [{"role": "user", "content": f"m{n}-{i}"} for i in range(20)]},
            format="json",
        )
        client.post("/v1/conversations", {}, format="json")
    with django_assert_num_queries(small):
        response = client.get(f"/v1/conversations/{conversation_id}/items?limit=100")
    assert len(response.json()["data"]) == 60
    with django_assert_num_queries(convs_small):
        assert len(client.get("/v1/conversations?limit=100").json()["data"]) == 4
    assert small <= 2  # the conversation, then its page
    assert convs_small <= 1


def test_service_accounts_own_their_conversations(live_gateway: LiveGateway, project_key) -> None:  # type: ignore[no-untyped-def]
    project = project_key[0].project
    _, first = make_api_key(project=project, key_type=ApiKey.Type.SERVICE)
    _, second = make_api_key(project=project, key_type=ApiKey.Type.SERVICE)
    with _http(live_gateway, first) as client:
        mine = client.post("/conversations", json={"title": "svc"}).json()
        assert [c["id"] for c in client.get("/conversations").json()["data"]] == [mine["id"]]
        assert client.get(f"/conversations/{mine['id']}").status_code == 200
    for key in (second, project_key[1]):
        with _http(live_gateway, key) as client:
            assert client.get(f"/conversations/{mine['id']}").status_code == 404
            assert client.get("/conversations").json()["data"] == []
    row = Conversation.objects.get()
    assert row.creator_user_id is None
    assert row.creator_service_account_id is not None
