"""Helpers for tests that need a real streaming standby (scripts/pg_standby.sh)."""

from __future__ import annotations

import functools
import os
import subprocess
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from gateway import db_router


@cache
def _standby_reason() -> str | None:
    """None when replica1 is a standby in recovery; else why the test cannot run."""
    if not settings.DATABASE_REPLICAS:
        return "no replica configured (DB_POSTGRESQL_READ1_DSN; scripts/pg_standby.sh gives one)"
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        return "replicas need PostgreSQL"
    return None


def standby_skip_reason() -> str | None:
    reason = _standby_reason()
    if reason is not None:
        return reason
    status = db_router.monitor.probe(settings.DATABASE_REPLICAS[0])
    if not status.online:
        return f"the replica cannot be reached ({status.error})"
    with db_router.monitor._connection(settings.DATABASE_REPLICAS[0], 2).cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        row = cursor.fetchone()
    if not row or not row[0]:
        return "DB_POSTGRESQL_READ1_DSN is not a standby (it does not replay WAL): no lag to test"
    return None


def requires_standby(fn: Callable[..., None]) -> Callable[..., None]:
    """Skip the test, with the reason, unless replica1 is a real standby. Decided when the test
    runs (the test database must exist by then), not at collection."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        reason = standby_skip_reason()
        if reason is not None:
            pytest.skip(reason)
        fn(*args, **kwargs)

    return run


def primary_lsn() -> int:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()::text")
        lsn = db_router.lsn_parse(cursor.fetchone()[0])
    assert lsn is not None
    return lsn


def wait_replica_caught_up(alias: str, timeout: float = 15.0) -> None:
    """Poll until the replica has replayed everything the primary has written so far."""
    target = primary_lsn()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = db_router.monitor.probe(alias)
        if status.online and status.replay_lsn is not None and status.replay_lsn >= target:
            return
        time.sleep(0.02)
    raise AssertionError(f"{alias} did not replay {db_router.lsn_format(target)} within {timeout}s")


def standby_dir() -> Path | None:
    """The directory scripts/pg_standby.sh started, when the test may stop and start it."""
    value = os.environ.get("PG_STANDBY_DIR")
    return Path(value) if value else None


def standby_command(action: str) -> None:
    directory = standby_dir()
    assert directory is not None
    script = Path(settings.BASE_DIR) / "scripts" / "pg_standby.sh"
    subprocess.run([str(script), action, str(directory)], check=True, capture_output=True, timeout=60)
