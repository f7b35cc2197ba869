"""Reads of stored responses, always scoped to the caller's project and, within it, to the
caller who created them (404 for anyone else's)."""

from __future__ import annotations

import copy
from typing import Any

from django.db.models import Q

from accounts.auth import Principal
from gateway.errors import InvalidRequest, NotFound
from gateway.pagination import PageParams
from responses.models import Response

# How far back a previous_response_id chain is followed when rebuilding history.
MAX_CHAIN = 200


def _not_found(response_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param=param, code="response_not_found")


def _creator_filter(principal: Principal) -> Q:
    """Within a project a response is its creator's alone, as conversations are: it may carry a
    private conversation's content. Service keys act as their service account, users as
    themselves (whichever of their keys or tokens made it)."""
    if principal.service_account_id is not None:
        return Q(user__isnull=True, principal__service_account_id=principal.service_account_id)
    if principal.user_id is None:
        return Q(pk__in=[])
    return Q(user_id=principal.user_id)


def response_get(principal: Principal, response_id: str, *, param: str | None = None) -> Response:
    """The caller's stored response. Raises NotFound for unknown ids, other projects' ids and
    other creators' ids alike."""
    response = (
        Response.objects.using("default")  # read-after-write: a worker may have just finished it
        .filter(_creator_filter(principal), public_id=response_id, project_id=principal.project_id or 0)
        .first()
    )
    if response is None:
        raise _not_found(response_id, param)
    return response


def response_history(response: Response) -> list[dict[str, Any]]:
    """Every item of the chain ending at `response` (oldest first): inputs then outputs.

    `instructions` are deliberately not part of it (OpenAI does not carry them over).
    """
    chain: list[Response] = []
    current: Response | None = response
    while current is not None and len(chain) < MAX_CHAIN:
        chain.append(current)
        parent_id = current.previous_response_id
        current = Response.objects.using("default").filter(pk=parent_id).first() if parent_id else None
    items: list[dict[str, Any]] = []
    for link in reversed(chain):
        items += link.input_items
        items += link.output
    return items


def _timestamp(value: Any) -> int | None:
    return int(value.timestamp()) if value is not None else None


def response_object(response: Response) -> dict[str, Any]:
    """The OpenAI `Response` wire object (every key the spec requires, nulls included)."""
    params = response.params
    status = response.status
    obj = {
        "id": response.public_id,
        "object": "response",
        "created_at": _timestamp(response.created_at),
        "status": status,
        "background": response.background,
        "completed_at": _timestamp(response.completed_at) if status == Response.Status.COMPLETED else None,
        "error": response.error,
        "incomplete_details": response.incomplete_details,
        "instructions": response.instructions or None,
        "max_output_tokens": params.get("max_output_tokens"),
        "max_tool_calls": params.get("max_tool_calls"),
        "model": response.model,
        # a copy: a running engine keeps changing the row's items after this object is sent
        "output": copy.deepcopy(response.output),
        "parallel_tool_calls": params.get("parallel_tool_calls", True),
        "previous_response_id": response.previous_response_public_id or None,
        "reasoning": params.get("reasoning") or {"effort": None, "summary": None},
        "service_tier": "default",
        "store": params.get("store", True),
        "temperature": params.get("temperature") if params.get("temperature") is not None else 1.0,
        "text": {
            "format": params.get("text_format") or {"type": "text"},
            "verbosity": params.get("verbosity") or "medium",
        },
        "tool_choice": params.get("tool_choice", "auto"),
        "tools": params.get("tools", []),
        "top_logprobs": params.get("top_logprobs") or 0,
        "top_p": params.get("top_p") if params.get("top_p") is not None else 1.0,
        "truncation": params.get("truncation", "disabled"),
        "usage": response.usage,
        "metadata": response.metadata,
        "conversation": {"id": response.conversation_public_id} if response.conversation_public_id else None,
    }
    if params.get("user"):
        obj["user"] = params["user"]  # a string in the spec: absent rather than null
    return obj


def input_items_page(response: Response, params: PageParams) -> dict[str, Any]:
    """This response's own input items as an OpenAI list (`after`/`before` are item ids).

    The items live in one JSON column, so the page is cut in memory; a response's input is small.
    """
    items = list(response.input_items)
    if params.order == "desc":
        items.reverse()
    ids = [item["id"] for item in items]
    start, end = 0, len(items)
    if params.after:
        if params.after not in ids:
            raise InvalidRequest(f"No input item with id '{params.after}' to page from.", param="after")
        start = ids.index(params.after) + 1
    if params.before:
        if params.before not in ids:
            raise InvalidRequest(f"No input item with id '{params.before}' to page from.", param="before")
        end = ids.index(params.before)
    window = items[start:end]
    page = window[: params.limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(window) > params.limit,
    }
