"""The suite's own pytest plugin (loaded by `-p tests.plugin` in pyproject.toml).

1. Parallel runs (pytest-xdist): each worker process gets its own Redis database. The suite
   empties the Redis database after every test (`cache.clear()` flushes the db, which also holds
   the broker and the limiter's counters), so two workers sharing one would wipe each other's keys.
   This runs when the plugin is imported, before Django reads its settings; processes a test
   starts inherit the worker's REDIS_URL.

2. On the embedded default the test database is SQLite in memory with a shared cache, which the
   in-thread live gateway shares with the test. Shared-cache SQLite locks whole tables and answers
   "database table is locked" at once (no busy wait) when a test reads a table while the gateway's
   background usage flush is writing it; `read_uncommitted` lets such reads through. A write
   meets the same lock when it begins a transaction while another thread's is open (the
   gateway's usage flush, a fire-and-forget write): beginning is retried for a few seconds, the
   busy wait a file database's `timeout` gives (CI saw one such 500 in six embedded runs).

3. Marks the tests that start operating-system processes as `slow`, so `make test-fast` can skip them.

A test is slow when it is marked `@pytest.mark.slow` by hand, or when its own code or one of the
fixtures it uses starts a process (a uvicorn or Celery subprocess), or its module drives a browser
or `npx`: the markers follow the code, so a new test that launches the gateway in a subprocess is
classed without anyone remembering to mark it.
"""

from __future__ import annotations

import inspect
import os
import re
import time
from functools import cache
from types import ModuleType
from typing import Any

import pytest

REDIS_DATABASES = 16  # Redis' default `databases` setting


def _own_redis_database_per_xdist_worker() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    url = os.environ.get("REDIS_URL", "")
    if not worker.startswith("gw") or not url:
        return
    base, _, database = url.rpartition("/")
    if not base.startswith("redis") or not database.isdigit():
        return  # a URL without an explicit database: leave it alone rather than guess
    own = (int(database) + 1 + int(worker[2:])) % REDIS_DATABASES
    os.environ["REDIS_URL"] = f"{base}/{own}"


_own_redis_database_per_xdist_worker()

# What starting a process looks like in this code base's tests and their launchers.
_STARTS_PROCESSES = re.compile(
    r"\bsubprocess\.|\bCeleryWorkers\b|\bGatewayProcess\b|\bcelery_workers\b"
    r"|\bcreate_subprocess_exec\b"
)
# Modules whose helpers start a browser or a Node tool for every test in them.
_MODULE_STARTS_PROCESSES = re.compile(r"\bplaywright\b|\bnpx\b")


@cache
def _source_starts_processes(source: str) -> bool:
    return bool(_STARTS_PROCESSES.search(source))


@cache
def _module_starts_processes(module: ModuleType) -> bool:
    try:
        return bool(_MODULE_STARTS_PROCESSES.search(inspect.getsource(module)))
    except (OSError, TypeError):
        return False


def _code_starts_processes(func: Any) -> bool:
    try:
        return _source_starts_processes(inspect.getsource(func))
    except (OSError, TypeError):
        return False


def _is_slow(item: pytest.Item) -> bool:
    if item.get_closest_marker("slow") is not None:
        return True
    module = getattr(item, "module", None)
    if module is not None and _module_starts_processes(module):
        return True
    function = getattr(item, "function", None)
    if function is not None and _code_starts_processes(function):
        return True
    fixture_info = getattr(item, "_fixtureinfo", None)
    if fixture_info is None:
        return False
    for definitions in fixture_info.name2fixturedefs.values():
        if any(_code_starts_processes(definition.func) for definition in definitions):
            return True
    return False


def _sqlite_reads_do_not_wait_for_table_locks(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "sqlite" and "mode=memory" in str(connection.settings_dict.get("NAME", "")):
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA read_uncommitted = 1")


_TABLE_LOCK_WAIT_SECONDS = 10.0


def _sqlite_begin_waits_for_table_locks() -> None:
    from django.db import OperationalError
    from django.db.backends.sqlite3.base import DatabaseWrapper

    begin = getattr(DatabaseWrapper, "_start_transaction_under_autocommit")  # noqa: B009 -- untyped

    def begin_when_unlocked(self: Any) -> None:
        if "mode=memory" not in str(self.settings_dict.get("NAME", "")):
            begin(self)
            return
        deadline = time.monotonic() + _TABLE_LOCK_WAIT_SECONDS
        while True:
            try:
                begin(self)
                return
            except OperationalError as err:  # nothing began: trying again is safe
                if "table is locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    setattr(DatabaseWrapper, "_start_transaction_under_autocommit", begin_when_unlocked)  # noqa: B010


def pytest_configure(config: pytest.Config) -> None:
    from django.db.backends.signals import connection_created

    connection_created.connect(_sqlite_reads_do_not_wait_for_table_locks, weak=False)
    _sqlite_begin_waits_for_table_locks()
    config.addinivalue_line(
        "markers", "slow: starts operating-system processes (skipped by `make test-fast`)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _is_slow(item) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
