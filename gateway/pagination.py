"""OpenAI-style cursor lists: {"object": "list", "data", "first_id", "last_id", "has_more"}.

Query parameters: `limit` (1-100, default 20), `order` (asc | desc), `after` (jan's `last`
is accepted too), and `before`. Rows are ordered by the internal primary key, which is stable
and increases with creation; the cursor is the public id of a row in the same scope.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from django.db.models import Model, QuerySet

from gateway.errors import InvalidRequest

M = TypeVar("M", bound=Model)

MAX_LIMIT = 100
DEFAULT_LIMIT = 20


@dataclass(frozen=True)
class PageParams:
    limit: int
    order: Literal["asc", "desc"]
    after: str | None
    before: str | None


def page_params(query: Mapping[str, Any], *, default_order: Literal["asc", "desc"] = "desc") -> PageParams:
    raw_limit = query.get("limit")
    if raw_limit in (None, ""):
        limit = DEFAULT_LIMIT
    else:
        try:
            limit = int(str(raw_limit))
        except ValueError:
            raise InvalidRequest("limit must be an integer between 1 and 100.", param="limit") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest("limit must be an integer between 1 and 100.", param="limit")
    order = query.get("order") or default_order
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be 'asc' or 'desc'.", param="order")
    after = query.get("after") or query.get("last") or None
    before = query.get("before") or None
    return PageParams(limit=limit, order=order, after=after, before=before)


def _cursor_pk(queryset: QuerySet[Any], id_field: str, public_id: str, param: str) -> int:
    pk = queryset.filter(**{id_field: public_id}).values_list("pk", flat=True).first()
    if pk is None:
        raise InvalidRequest(f"No object with id '{public_id}' to page from.", param=param)
    return int(pk)


def paginate(
    queryset: QuerySet[M],
    params: PageParams,
    serialize: Callable[[M], dict[str, Any]],
    *,
    id_field: str = "public_id",
) -> dict[str, Any]:
    """One page of `queryset` (already filtered by tenant) as the OpenAI list envelope."""
    ascending = params.order == "asc"
    page = queryset
    if params.after:
        pk = _cursor_pk(queryset, id_field, params.after, "after")
        page = page.filter(pk__gt=pk) if ascending else page.filter(pk__lt=pk)
    if params.before:
        pk = _cursor_pk(queryset, id_field, params.before, "before")
        page = page.filter(pk__lt=pk) if ascending else page.filter(pk__gt=pk)
    rows = list(page.order_by("pk" if ascending else "-pk")[: params.limit + 1])
    has_more = len(rows) > params.limit
    rows = rows[: params.limit]
    data = [serialize(row) for row in rows]
    return {
        "object": "list",
        "data": data,
        "first_id": getattr(rows[0], id_field) if rows else None,
        "last_id": getattr(rows[-1], id_field) if rows else None,
        "has_more": has_more,
    }
