"""Run sync (ORM) work from async code off the request path.

Work started from a request would otherwise inherit that request's thread-sensitive context,
run on its executor thread after the request ended, and never hand its database connection
back to the pool. Here it runs on the shared pool instead and always closes its connections.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

logger = logging.getLogger(__name__)
T = TypeVar("T")

_tasks: set[asyncio.Task[Any]] = set()


def _closing(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    return run


async def run_sync(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Await sync work on the shared thread pool, its connections returned afterwards."""
    return await sync_to_async(_closing(fn), thread_sensitive=False)(*args, **kwargs)


def fire_and_forget(fn: Callable[..., Any], /, **kwargs: Any) -> None:
    """Start sync work nobody waits for; failures are logged, never raised into a request."""

    async def runner() -> None:
        try:
            await run_sync(fn, **kwargs)
        except Exception:
            logger.exception("background work failed", extra={"work": getattr(fn, "__name__", "?")})

    task = asyncio.get_running_loop().create_task(runner())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
