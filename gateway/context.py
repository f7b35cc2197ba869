"""Per-request state shared by middleware, logging, authentication and the database router.

A mutable dict in a ContextVar: asgiref copies the context into `sync_to_async` threads, and
because the dict itself is shared, what a sync service records (a write, the principal) is
seen by the async middleware that logs the request.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

_current: ContextVar[dict[str, Any] | None] = ContextVar("gateway_request_context", default=None)

# The database router's state ("which principals, which write position must reads see") follows
# work into a nested context: a Celery task that opens a context per background run still reads
# what the request that enqueued it wrote.
_INHERITED = ("db",)


def begin(**fields: Any) -> Token[dict[str, Any] | None]:
    state = dict(fields)
    parent = _current.get()
    if parent is not None:
        for name in _INHERITED:
            if name in parent:
                state.setdefault(name, parent[name])
    return _current.set(state)


def end(token: Token[dict[str, Any] | None]) -> None:
    _current.reset(token)


def current() -> dict[str, Any] | None:
    return _current.get()


def bind_log_fields(**fields: Any) -> None:
    """Attach ids (principal, organization, project, key) to this request's log line."""
    state = _current.get()
    if state is not None:
        state.setdefault("log", {}).update({key: value for key, value in fields.items() if value is not None})


def request_id() -> str | None:
    state = _current.get()
    return state.get("request_id") if state else None
