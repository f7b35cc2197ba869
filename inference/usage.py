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
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from gateway.background import run_sync
from inference.models import UsageRecord

logger = logging.getLogger(__name__)


@dataclass
class UsageBuffer:
    rows: list[UsageRecord] = field(default_factory=list)
    batches_written: int = 0  # flushes that reached the database (tests and diagnostics)
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event | None = None

    def add(self, **values: Any) -> None:
        self.rows.append(UsageRecord(created_at=timezone.now(), **values))
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


def _insert(batch: list[UsageRecord]) -> None:
    """Insert a batch; a row that cannot be stored (its project was hard-deleted meanwhile) is
    dropped and logged alone instead of blocking every row behind it."""
    try:
        with transaction.atomic():
            UsageRecord.objects.bulk_create(batch, batch_size=500)
        return
    except IntegrityError:
        pass
    for row in batch:
        try:
            with transaction.atomic():
                row.save(force_insert=True)
        except IntegrityError:
            logger.warning(
                "usage row dropped: its tenant no longer exists", extra={"request_id": row.request_id}
            )


usage_buffer = UsageBuffer()
