"""Writes. Each service validates everything first, then writes in one transaction, so bad
input leaves nothing half-written; `items_added` goes out after commit."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.auth import Principal
from conversations import items as wire
from conversations.models import Conversation, Item
from conversations.signals import items_added
from conversations.turns import UNTITLED, Turn
from gateway.errors import InvalidRequest

logger = logging.getLogger(__name__)

NEW_CONVERSATION_TITLE = UNTITLED


def _announce(conversation: Conversation, rows: list[Item]) -> None:
    def send() -> None:
        for receiver, result in items_added.send_robust(
            sender=Conversation, conversation=conversation, items=rows
        ):
            if isinstance(result, Exception):
                logger.error(
                    "items_added receiver failed",
                    exc_info=result,
                    extra={"receiver": getattr(receiver, "__qualname__", repr(receiver))},
                )

    transaction.on_commit(send)


def _write_items(
    conversation: Conversation, specs: Sequence[wire.ItemSpec], response_id: str | None
) -> list[Item]:
    """Insert validated items in order (one INSERT) and touch the conversation; the caller
    holds the transaction."""
    given = [spec.public_id for spec in specs if spec.given_id]
    taken = (
        set(
            Item.objects.filter(conversation_id=conversation.pk, public_id__in=given).values_list(
                "public_id", flat=True
            )
        )
        if given
        else set()
    )
    now = timezone.now()
    rows = []
    for spec in specs:
        item_id = spec.public_id
        # A client may send back items with the ids it got; one already here gets a new id.
        if not item_id or item_id in taken:
            item_id = wire.new_item_id(spec.type)
        taken.add(item_id)
        rows.append(
            Item(
                public_id=item_id,
                conversation=conversation,
                organization_id=conversation.organization_id,
                project_id=conversation.project_id,
                response_id=response_id or "",
                type=spec.type,
                role=spec.role,
                status=spec.status,
                content=spec.content,
                data=spec.data,
                usage=spec.usage,
                created_at=now,
            )
        )
    created = Item.objects.bulk_create(rows)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=now)
    return created


def _parse_specs(
    items: Sequence[dict[str, Any] | wire.ItemSpec], max_items: int | None
) -> list[wire.ItemSpec]:
    if isinstance(items, list | tuple) and all(isinstance(item, wire.ItemSpec) for item in items):
        return [item for item in items if isinstance(item, wire.ItemSpec)]
    # Anything else is the caller's JSON, a list or not: parse_items says what is wrong with it.
    return wire.parse_items(list(items) if isinstance(items, tuple) else items, max_items=max_items)


def conversation_create(
    *,
    principal: Principal,
    title: str | None = None,
    metadata: dict[str, Any] | None = None,
    items: list[dict[str, Any]] | None = None,
    max_items: int | None = None,
    public_id: str | None = None,
) -> Conversation:
    """A conversation owned by the caller, with optional first items (all or nothing).

    `public_id` lets a caller announce the id before the row exists (a chat stream sends it in
    its first event and creates the conversation when it stores the turn).
    """
    clean_title = wire.parse_title(title) if title is not None else ""
    clean_metadata = wire.parse_metadata(metadata) if metadata is not None else {}
    specs = _parse_specs([] if items is None else items, max_items)
    if principal.project_id is None:
        raise InvalidRequest("Conversations live in a project; send OpenAI-Project.", code="project_required")
    with transaction.atomic():
        conversation = Conversation(
            organization_id=principal.organization_id,
            project_id=principal.project_id,
            creator_user_id=None if principal.service_account_id else principal.user_id,
            creator_service_account_id=principal.service_account_id,
            title=clean_title,
            metadata=clean_metadata,
        )
        if public_id:
            conversation.public_id = public_id
        conversation.save()
        if specs:
            _announce(conversation, _write_items(conversation, specs, None))
    return conversation


def conversation_update(
    *, conversation: Conversation, metadata: dict[str, Any] | None = None, title: str | None = None
) -> Conversation:
    """Replace the metadata (OpenAI's update replaces it wholesale) and/or set the title."""
    fields = ["updated_at"]
    if metadata is not None:
        conversation.metadata = wire.parse_metadata(metadata)
        fields.append("metadata")
    if title is not None:
        conversation.title = wire.parse_title(title)
        fields.append("title")
    conversation.updated_at = timezone.now()
    conversation.save(update_fields=fields)
    return conversation


def conversation_delete(*, conversation: Conversation) -> Conversation:
    """Soft delete; the items stay (as OpenAI documents) but can no longer be reached."""
    now = timezone.now()
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=now, updated_at=now)
    conversation.deleted_at = conversation.updated_at = now
    return conversation


def items_create(
    *,
    conversation: Conversation,
    items: Sequence[dict[str, Any] | wire.ItemSpec],
    response_id: str | None = None,
    max_items: int | None = None,
) -> list[Item]:
    """Append items in OpenAI's input-item shapes (messages, function_call,
    function_call_output, reasoning); validates the whole batch first, then writes it all."""
    specs = _parse_specs(items, max_items)
    if not specs:
        return []
    with transaction.atomic():
        # Lock the conversation so concurrent appends keep their batches contiguous.
        Conversation.objects.select_for_update().filter(pk=conversation.pk).exists()
        rows = _write_items(conversation, specs, response_id)
        _announce(conversation, rows)
    return rows


def item_delete(*, item: Item) -> None:
    now = timezone.now()
    with transaction.atomic():
        Item.objects.filter(pk=item.pk).update(deleted_at=now)
        Conversation.objects.filter(pk=item.conversation_id).update(updated_at=now)


def chat_turn_store(*, principal: Principal, turn: Turn, reply: list[wire.ItemSpec]) -> list[Item]:
    """Store a conversation-aware chat turn: its input items, then the reply's, in one
    transaction. A turn that announced a new conversation creates it here, so a request that
    fails before the model answers leaves nothing behind.

    Called once per turn, including from a cancelled stream's background write.
    """
    with transaction.atomic():
        if turn.conversation_pk is None:
            conversation = conversation_create(
                principal=principal, title=turn.title, public_id=turn.conversation_id
            )
        else:
            conversation = Conversation.objects.select_for_update().get(pk=turn.conversation_pk)
            if turn.retitle and conversation.title in ("", NEW_CONVERSATION_TITLE):
                conversation.title = turn.retitle
                conversation.save(update_fields=["title"])
        rows = _write_items(conversation, [*turn.inputs, *reply], None)
        _announce(conversation, rows)
    return rows
