"""Reads. Tenancy lives here: a caller sees only its project's conversations, and within the
project only those it created (a user's, or a service account's for service keys). Anything
else is NotFound, never Forbidden: another tenant must not learn that an id exists."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet

from accounts.auth import Principal
from conversations import turns
from conversations.models import Conversation, Item
from conversations.serializers import ConversationItemOut, ConversationOut
from gateway.errors import InvalidRequest, NotFound


def owner_filter(principal: Principal) -> Q:
    """The creator columns a principal owns (service keys act as their service account)."""
    if principal.service_account_id is not None:
        return Q(creator_service_account_id=principal.service_account_id)
    return Q(creator_user_id=principal.user_id, creator_service_account__isnull=True)


def conversation_queryset(principal: Principal) -> QuerySet[Conversation]:
    if principal.project_id is None:
        return Conversation.objects.none()
    return Conversation.objects.filter(
        owner_filter(principal), project_id=principal.project_id, deleted_at__isnull=True
    )


def conversation_list(principal: Principal, *, limit: int = 20) -> list[Conversation]:
    """The caller's conversations, newest first."""
    return list(conversation_queryset(principal).order_by("-pk")[:limit])


def _conversation_not_found(conversation_id: str) -> NotFound:
    return NotFound(
        f"Conversation with id '{conversation_id}' not found.",
        param="conversation_id",
        code="conversation_not_found",
    )


def conversation_get(principal: Principal, conversation_id: str) -> Conversation:
    """The caller's conversation; NotFound for unknown, deleted, another project's or creator's."""
    conversation = conversation_queryset(principal).filter(public_id=conversation_id).first()
    if conversation is None:
        raise _conversation_not_found(conversation_id)
    return conversation


def item_queryset(conversation: Conversation) -> QuerySet[Item]:
    return Item.objects.filter(conversation_id=conversation.pk, deleted_at__isnull=True)


def item_list(conversation: Conversation, *, order: str = "asc", limit: int | None = None) -> list[Item]:
    """The conversation's items in creation order (`order="desc"`: newest first)."""
    rows = item_queryset(conversation).order_by("pk" if order == "asc" else "-pk")
    return list(rows if limit is None else rows[:limit])


def item_recent(conversation: Conversation, *, limit: int) -> list[Item]:
    """The newest `limit` items, oldest first: the history a chat turn is built from."""
    return list(reversed(item_list(conversation, order="desc", limit=limit)))


def item_get(conversation: Conversation, item_id: str) -> Item:
    item = item_queryset(conversation).filter(public_id=item_id).first()
    if item is None:
        raise NotFound(f"Item with id '{item_id}' not found.", param="item_id", code="item_not_found")
    return item


# --- Wire shapes, for other apps ---------------------------------------------------------------
# The MCP resources and the Responses API show conversations and items as the Conversations API
# does: through its serializers, the one definition of these shapes.


def conversation_object(conversation: Conversation) -> dict[str, Any]:
    """OpenAI's Conversation, plus jan's `title`."""
    return dict(ConversationOut(conversation).data)


def item_object(item: Item) -> dict[str, Any]:
    """OpenAI's ConversationItem."""
    return dict(ConversationItemOut(item).data)


# --- Conversation-aware chat ---------------------------------------------------------------


def _turn_conversation(principal: Principal, conversation_id: str | None) -> Conversation | None:
    return conversation_get(principal, conversation_id) if conversation_id else None


def turn_for_chat(principal: Principal, body: dict[str, Any]) -> turns.Turn:
    """`/v1/conv/chat/completions`: the client sends the whole history; the last message is
    the one stored. Raises InvalidRequest / NotFound before anything reaches the upstream.

    Both conversation-aware endpoints store a turn only with `store: true`, jan's default: a
    client that never asked for storage gets none, whichever of the two it calls."""
    conversation_id, store, store_reasoning = turns.take_options(
        body, names=("conversation",), store_default=False
    )
    conversation = _turn_conversation(principal, conversation_id)
    messages = body["messages"]
    last = len(messages) - 1
    inputs = [turns.message_items(messages[last], f"messages[{last}]")] if store else []
    return turns.new_turn(
        body,
        conversation=conversation,
        inputs=inputs,
        title_source=messages,
        store=store,
        store_reasoning=store_reasoning,
    )


def turn_for_completion(principal: Principal, body: dict[str, Any]) -> turns.Turn:
    """`/v1/conv/completions`: the client sends only the new turn (`input`); the history comes
    from the conversation's stored items, newest kept within the configured budgets."""
    conversation_id, store, store_reasoning = turns.take_options(
        body, names=("conversation_id", "conversation"), store_default=False
    )
    if "messages" in body:
        raise InvalidRequest(
            "This endpoint takes the new turn as 'input'; the history comes from the conversation.",
            param="messages",
            code="unknown_parameter",
        )
    messages = turns.input_messages(body.pop("input", None))
    inputs = [turns.message_items(message, f"input[{index}]") for index, message in enumerate(messages)]
    conversation = _turn_conversation(principal, conversation_id)
    history: list[dict[str, Any]] = []
    if conversation is not None:
        stored = [
            item_object(item) for item in item_recent(conversation, limit=settings.CONV_HISTORY_MAX_ITEMS)
        ]
        history = turns.history_messages(stored, max_chars=settings.CONV_HISTORY_MAX_CHARS)
    body["messages"] = [*history, *messages]
    return turns.new_turn(
        body,
        conversation=conversation,
        inputs=inputs,
        title_source=messages,
        store=store,
        store_reasoning=store_reasoning,
    )
