"""Usage rows are written off the request path, in batches, and survive what they can."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gateway.background import run_sync
from inference.models import UsageRecord
from inference.usage import UsageBuffer
from organizations.tests.factories import make_api_key

pytestmark = pytest.mark.django_db(transaction=True)


def _row(key: Any, **overrides: Any) -> dict[str, Any]:
    values = {
        "organization_id": key.organization_id,
        "project_id": key.project_id,
        "api_key_id": key.pk,
        "user_id": None,
        "model": "fake-model",
        "provider_id": None,
        "stream": False,
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "latency_ms": 3.5,
        "time_to_first_token_ms": 1.0,
        "status_code": 200,
        "outcome": UsageRecord.Outcome.SUCCESS,
        "request_id": "req",
    }
    return {**values, **overrides}


async def _count() -> int:
    return await run_sync(UsageRecord.objects.count)


def test_rows_wait_for_the_interval_then_land_in_one_batch(settings: Any) -> None:
    settings.USAGE_FLUSH_INTERVAL_SECONDS = 0.3
    settings.USAGE_FLUSH_MAX_ROWS = 1000
    key, _ = make_api_key()
    buffer = UsageBuffer()

    async def scenario() -> tuple[int, int, int]:
        for n in range(50):
            buffer.add(**_row(key, request_id=f"r{n}"))
        before = await _count()  # nothing written on the request path
        await asyncio.sleep(0.8)
        return before, await _count(), buffer.batches_written

    before, after, batches = asyncio.run(scenario())
    assert (before, after, batches) == (0, 50, 1)
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == sorted(
        f"r{n}" for n in range(50)
    )


def test_a_full_buffer_flushes_before_the_interval(settings: Any) -> None:
    settings.USAGE_FLUSH_INTERVAL_SECONDS = 60
    settings.USAGE_FLUSH_MAX_ROWS = 10
    key, _ = make_api_key()
    buffer = UsageBuffer()

    async def scenario() -> int:
        for _ in range(25):
            buffer.add(**_row(key))
            await asyncio.sleep(0)
        for _ in range(100):
            if await _count() >= 20:
                break
            await asyncio.sleep(0.02)
        written = await _count()
        await buffer.close()  # shutdown flushes the rest
        return written

    assert asyncio.run(scenario()) >= 20
    assert UsageRecord.objects.count() == 25


def test_a_row_whose_tenant_vanished_does_not_block_the_batch(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.USAGE_FLUSH_INTERVAL_SECONDS = 0.1
    key, _ = make_api_key()
    buffer = UsageBuffer()

    async def scenario() -> None:
        buffer.add(**_row(key, request_id="kept-1"))
        buffer.add(**_row(key, request_id="orphan", project_id=key.project_id + 10_000))
        buffer.add(**_row(key, request_id="kept-2"))
        await buffer.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["kept-1", "kept-2"]
    assert any("usage row dropped" in record.getMessage() for record in caplog.records)
