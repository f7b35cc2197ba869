"""`item_reference` input items: a client names an item it got earlier instead of sending it back.

Clients that keep `store: true` (the Vercel AI SDK, for one) send the previous turn's messages,
reasoning and tool calls as `{"type": "item_reference", "id": "msg_…"}`. A reference resolves to
the caller's own stored item: an item of one of their conversations, or an input or output item
of one of their project's stored responses. Anything else (unknown, another tenant's) is the
same 400 with `param`, so an id's existence elsewhere is never revealed.
"""

from __future__ import annotations

import copy
from typing import Any

from accounts.auth import Principal
from gateway.errors import InvalidRequest
from responses.models import Response
from responses.validation import CreateRequest

# A response's items sit in JSON columns: the lookup reads the newest responses that mention the
# id, and the exact match is made in Python. Ids are long random strings, so a mention elsewhere
# (in some text) is rare and only costs reading one more row.
_CANDIDATE_RESPONSES = 20


def _conversation_item(principal: Principal, item_id: str) -> tuple[str, dict[str, Any]] | None:
    from conversations import selectors as conversation_selectors
    from conversations.models import Item

    item = (
        Item.objects.filter(
            public_id=item_id,
            deleted_at__isnull=True,
            conversation__in=conversation_selectors.conversation_queryset(principal),
        )
        .select_related("conversation")
        .order_by("-pk")
        .first()
    )
    if item is None:
        return None
    return item.conversation.public_id, conversation_selectors.item_object(item)


def _response_item(principal: Principal, item_id: str) -> dict[str, Any] | None:
    if principal.project_id is None:
        return None
    rows = (
        Response.objects.using("default")  # the previous turn may have been stored just now
        .filter(project_id=principal.project_id)
        .filter(output__icontains=item_id)
        .order_by("-pk")
        .only("output")[:_CANDIDATE_RESPONSES]
    )
    for row in rows:
        for item in row.output:
            if isinstance(item, dict) and item.get("id") == item_id:
                return copy.deepcopy(item)
    rows = (
        Response.objects.using("default")
        .filter(project_id=principal.project_id)
        .filter(input_items__icontains=item_id)
        .order_by("-pk")
        .only("input_items")[:_CANDIDATE_RESPONSES]
    )
    for row in rows:
        for item in row.input_items:
            if isinstance(item, dict) and item.get("id") == item_id:
                return copy.deepcopy(item)
    return None


def resolve_item_references(principal: Principal, request: CreateRequest) -> CreateRequest:
    """Replace each `item_reference` of the input with the stored item it names.

    A reference to an item of the very conversation the response continues is dropped: that
    item is already in the history the model sees, and adding it again would duplicate it there.
    """
    if not any(item["type"] == "item_reference" for item in request.input):
        return request
    resolved: list[dict[str, Any]] = []
    for index, item in enumerate(request.input):
        if item["type"] != "item_reference":
            resolved.append(item)
            continue
        item_id = item["id"]
        found = _conversation_item(principal, item_id)
        if found is not None:
            conversation_id, stored = found
            if conversation_id != request.conversation_id:
                resolved.append(stored)
            continue
        stored_item = _response_item(principal, item_id)
        if stored_item is None:
            raise InvalidRequest(
                f"Item with id '{item_id}' not found.", param=f"input[{index}].id", code="item_not_found"
            )
        resolved.append(stored_item)
    request.input = resolved
    return request
