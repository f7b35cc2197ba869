"""Services and selectors directly: validation, all-or-nothing writes, tenancy, the signal."""

from __future__ import annotations

import pytest

from accounts.auth import Principal
from conversations import selectors, services
from conversations.models import Conversation, Item
from conversations.signals import items_added
from conversations.tests.factories import make_conversation, make_principal, principal_for
from conversations.turns import title_from
from gateway.errors import InvalidRequest, NotFound
from organizations.models import ApiKey
from organizations.tests.factories import make_api_key, make_project, make_user

pytestmark = pytest.mark.django_db

ITEMS = [
    {"type": "message", "role": "user", "content": "Hi"},
    {"role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
    {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "call_1", "output": "42"},
    {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}]},
]


def test_create_with_items_renders_openai_shapes() -> None:
    conversation = make_conversation(title="  Trip ", metadata={"topic": "travel"}, items=ITEMS)
    rows = selectors.item_list(conversation)
    assert [selectors.item_object(row)["type"] for row in rows] == [
        "message",
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
    ]
    user, assistant, call, output, reasoning = (selectors.item_object(row) for row in rows)
    assert user["id"].startswith("msg_")
    assert user["content"] == [{"type": "input_text", "text": "Hi"}]
    assert assistant["content"] == [
        {"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}
    ]
    assert call == {
        "type": "function_call",
        "id": call["id"],
        "status": "completed",
        "call_id": "call_1",
        "name": "lookup",
        "arguments": "{}",
    }
    assert call["id"].startswith("fc_")
    assert output["output"] == "42"
    assert reasoning["id"].startswith("rs_")
    assert reasoning["summary"] == [{"type": "summary_text", "text": "thought"}]
    body = selectors.conversation_object(conversation)
    assert body["title"] == "Trip"
    assert body["metadata"] == {"topic": "travel"}
    assert body["object"] == "conversation"


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ([{"type": "message", "role": "user", "content": "ok"}] * 21, "items"),
        ([{"type": "message", "role": "robot", "content": "x"}], "items[0].role"),
        ([{"type": "file_search_call"}], "items[0].type"),
        ([{"role": "user", "content": [{"type": "output_text", "text": "x"}]}], "items[0].content[0].type"),
        ([{"role": "user", "content": [{"type": "video", "text": "x"}]}], "items[0].content[0].type"),
        ([{"role": "user", "content": "ok"}, {"type": "function_call", "name": "f"}], "items[1].call_id"),
        ([{"role": "user", "content": "x" * 101}], "items[0].content"),
    ],
)
def test_bad_items_write_nothing(settings, items, param) -> None:  # type: ignore[no-untyped-def]
    settings.CONVERSATIONS_MAX_TEXT_CHARS = 100
    principal = make_principal()
    with pytest.raises(InvalidRequest) as caught:
        services.conversation_create(principal=principal, items=items, max_items=20)
    assert caught.value.param == param
    assert Conversation.objects.count() == 0
    assert Item.objects.count() == 0


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({f"k{i}": "v" for i in range(17)}, "metadata"),
        ({"k" * 65: "v"}, "metadata"),
        ({"k": "v" * 513}, "metadata.k"),
        ({"k": 1}, "metadata.k"),
        (["k"], "metadata"),
    ],
)
def test_bad_metadata(metadata, param) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequest) as caught:
        make_conversation(metadata=metadata)
    assert caught.value.param == param
    assert Conversation.objects.count() == 0


def test_metadata_limits_are_inclusive() -> None:
    metadata = {f"{i:064d}": "v" * 512 for i in range(16)}
    assert make_conversation(metadata=metadata).metadata == metadata


def test_items_create_appends_in_order_and_keeps_response_id() -> None:
    conversation = make_conversation(items=[{"role": "user", "content": "first"}])
    rows = services.items_create(
        conversation=conversation,
        items=[{"role": "user", "content": "second"}, {"role": "assistant", "content": "third"}],
        response_id="resp_abc",
    )
    assert [row.response_id for row in rows] == ["resp_abc", "resp_abc"]
    texts = [row.content[0]["text"] for row in selectors.item_list(conversation)]
    assert texts == ["first", "second", "third"]
    assert [row.content[0]["text"] for row in selectors.item_list(conversation, order="desc", limit=2)] == [
        "third",
        "second",
    ]


def test_items_create_is_all_or_nothing() -> None:
    conversation = make_conversation()
    with pytest.raises(InvalidRequest):
        services.items_create(
            conversation=conversation, items=[{"role": "user", "content": "ok"}, {"type": "nope"}]
        )
    assert Item.objects.count() == 0


def test_given_ids_are_kept_unless_taken() -> None:
    conversation = make_conversation()
    [first] = services.items_create(
        conversation=conversation, items=[{"id": "msg_given1", "role": "user", "content": "a"}]
    )
    assert first.public_id == "msg_given1"
    [again, wrong_prefix] = services.items_create(
        conversation=conversation,
        items=[
            {"id": "msg_given1", "role": "user", "content": "b"},
            {"id": "fc_not_a_message", "role": "user", "content": "c"},
        ],
    )
    assert again.public_id not in ("msg_given1",)
    assert again.public_id.startswith("msg_")
    assert wrong_prefix.public_id.startswith("msg_")
    assert wrong_prefix.public_id != "fc_not_a_message"


def test_items_added_is_sent_after_commit(django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    received: list[tuple[Conversation, list[Item]]] = []

    def receiver(sender, conversation, items, **kwargs):  # type: ignore[no-untyped-def]
        received.append((conversation, items))

    items_added.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            conversation = make_conversation(items=[{"role": "user", "content": "hi"}])
            rows = services.items_create(
                conversation=conversation, items=[{"role": "user", "content": "again"}]
            )
        assert received == []  # nothing before commit
        for callback in callbacks:
            callback()
    finally:
        items_added.disconnect(receiver)
    assert len(received) == 2
    assert received[1] == (conversation, rows)
    assert [item.content[0]["text"] for item in received[0][1]] == ["hi"]


def test_empty_conversation_sends_no_signal(django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks() as callbacks:
        make_conversation()
    assert callbacks == []


def test_tenancy_project_creator_and_service_account() -> None:
    key, _ = make_api_key()
    owner = principal_for(key)
    conversation = make_conversation(principal=owner)
    assert selectors.conversation_get(owner, conversation.public_id) == conversation

    # Another user's key in the same project: not theirs.
    teammate = make_user()
    assert key.project is not None
    other_key, _ = make_api_key(project=key.project, user=teammate)
    # Another project of the same organization, same user.
    other_project = make_project(org=key.organization)
    same_user_elsewhere, _ = make_api_key(project=other_project, user=key.owner_user)
    # A service account in the same project.
    service_key, _ = make_api_key(project=key.project, key_type=ApiKey.Type.SERVICE)
    for stranger in (other_key, same_user_elsewhere, service_key):
        principal = principal_for(stranger)
        with pytest.raises(NotFound) as caught:
            selectors.conversation_get(principal, conversation.public_id)
        assert caught.value.code == "conversation_not_found"
        assert selectors.conversation_list(principal) == []

    service = principal_for(service_key)
    mine = make_conversation(principal=service)
    assert mine.creator_service_account_id == service_key.service_account_id
    assert mine.creator_user_id is None
    assert selectors.conversation_list(service) == [mine]
    assert selectors.conversation_list(owner) == [conversation]


def test_deleted_conversation_and_item_are_gone() -> None:
    principal = make_principal()
    conversation = make_conversation(principal=principal, items=[{"role": "user", "content": "x"}])
    [item] = selectors.item_list(conversation)
    services.item_delete(item=item)
    with pytest.raises(NotFound):
        selectors.item_get(conversation, item.public_id)
    services.conversation_delete(conversation=conversation)
    with pytest.raises(NotFound):
        selectors.conversation_get(principal, conversation.public_id)
    assert Item.objects.filter(conversation=conversation).count() == 1  # items are kept, hidden


def test_conversation_list_newest_first() -> None:
    principal = make_principal()
    first = make_conversation(principal=principal)
    second = make_conversation(principal=principal)
    assert selectors.conversation_list(principal) == [second, first]
    assert selectors.conversation_list(principal, limit=1) == [second]


def test_update_replaces_metadata() -> None:
    conversation = make_conversation(metadata={"a": "1"})
    services.conversation_update(conversation=conversation, metadata={"b": "2"})
    conversation.refresh_from_db()
    assert conversation.metadata == {"b": "2"}


def test_a_users_jwt_and_key_share_conversations_in_a_project() -> None:
    key, _ = make_api_key()
    assert key.project is not None
    assert key.owner_user is not None
    conversation = make_conversation(principal=principal_for(key))
    jwt = Principal(
        kind="jwt",
        organization_id=key.organization_id,
        organization_public_id=key.organization.public_id,
        project_id=key.project_id,
        project_public_id=key.project.public_id,
        user_id=key.owner_user_id,
        user_public_id=key.owner_user.public_id,
    )
    assert selectors.conversation_get(jwt, conversation.public_id) == conversation


def test_titles_are_cut_by_characters_not_bytes() -> None:
    text = "Über die Brücke gehen wir morgen früh zusammen mit allen Kindern"
    title = title_from([{"role": "system", "content": "ignored"}, {"role": "user", "content": text}])
    assert title == "Über die Brücke gehen wir morgen früh zusammen…"
    assert len(title) <= 51
    assert (
        title_from([{"role": "user", "content": [{"type": "text", "text": "  Hi\n there "}]}]) == "Hi there"
    )
    assert title_from([{"role": "assistant", "content": "no user"}]) == "New Conversation"
