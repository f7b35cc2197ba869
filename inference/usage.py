"""Usage rows, written in batches off the request path.

Each web worker buffers rows in memory and a background task bulk-inserts them every
USAGE_FLUSH_INTERVAL_SECONDS, or as soon as USAGE_FLUSH_MAX_ROWS are waiting. ASGI shutdown
flushes what is left. A worker that is killed outright loses what it buffered: at most
USAGE_FLUSH_MAX_ROWS rows (200) or one flush interval of traffic, whichever is smaller; while
the database is unreachable the buffer keeps up to 10 x USAGE_FLUSH_MAX_ROWS rows for retry,
and that is the most a crash during an outage can lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from gateway.background import run_sync
from inference.models import UsageRecord

logger = logging.getLogger(__name__)


@dataclass
class UsageBuffer:
    # Column values by attribute name; model instances are built (or COPY rows written) only when
    # a batch is flushed, off the event loop's per-request work.
    rows: list[dict[str, Any]] = field(default_factory=list)
    batches_written: int = 0  # flushes that reached the database (tests and diagnostics)
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event | None = None

    def add(self, **values: Any) -> None:
        values["created_at"] = timezone.now()
        self.rows.append(values)
        self._ensure_flusher()
        if len(self.rows) >= settings.USAGE_FLUSH_MAX_ROWS and self._wake is not None:
            self._wake.set()

    def _ensure_flusher(self) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._wake is not None  # noqa: S101 -- set with the task
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=settings.USAGE_FLUSH_INTERVAL_SECONDS)
            self._wake.clear()
            await self.flush()
            if not self.rows:
                return  # idle: stop until the next row arrives

    async def flush(self) -> None:
        if not self.rows:
            return
        batch, self.rows = self.rows, []
        try:
            await run_sync(_insert, batch)
            self.batches_written += 1
        except Exception:
            # The database is down: keep the rows for the next flush, bounded so memory is too.
            logger.exception("usage flush failed; rows kept for retry", extra={"rows": len(batch)})
            self.rows = (batch + self.rows)[-10 * settings.USAGE_FLUSH_MAX_ROWS :]

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        await self.flush()


def _insert(batch: list[dict[str, Any]]) -> None:
    """Insert a batch; a row that cannot be stored (its project was hard-deleted meanwhile) is
    dropped and logged alone instead of blocking every row behind it."""
    connection = connections[router.db_for_write(UsageRecord)]
    try:
        with transaction.atomic(using=connection.alias):
            if connection.vendor == "postgresql":
                _copy(connection, batch)
            else:
                UsageRecord.objects.using(connection.alias).bulk_create(
                    [UsageRecord(**values) for values in batch], batch_size=500
                )
        return
    except IntegrityError:
        pass
    for values in batch:
        try:
            with transaction.atomic(using=connection.alias):
                UsageRecord(**values).save(force_insert=True, using=connection.alias)
        except IntegrityError:
            logger.warning(
                "usage row dropped: its tenant no longer exists",
                extra={"request_id": values.get("request_id")},
            )


def _copy(connection: Any, batch: list[dict[str, Any]]) -> None:
    """COPY the batch in: on PostgreSQL a fifth of bulk_create's CPU per row (no model
    instances, no per-field preparation), which the web worker spends between requests.
    Foreign keys are checked as for an INSERT: a dangling one fails the whole COPY."""
    fields = _copy_fields()
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(UsageRecord._meta.db_table)
    defaults = [f.get_default() for f in fields]
    names = [f.attname for f in fields]
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for values in batch:
            copy.write_row([values.get(name, default) for name, default in zip(names, defaults, strict=True)])


@functools.cache
def _copy_fields() -> list[Any]:
    # Columns written by name: every concrete field but the generated primary key.
    return [f for f in UsageRecord._meta.concrete_fields if not f.primary_key]


usage_buffer = UsageBuffer()
