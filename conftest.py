"""Shared test setup. Services are real: PostgreSQL and Redis when DATABASE_URL / REDIS_URL are
set (as .ci/run does), the embedded SQLite/local-memory default otherwise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _test_settings(settings: pytest.FixtureRequest) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # type: ignore[attr-defined]
    # A mirrored replica alias cannot see rows written inside a test's open transaction;
    # gateway/tests/test_db_router.py turns replica reads back on where it can.
    settings.DATABASE_READ_FROM_REPLICAS = False  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    yield
    cache.clear()


@pytest.fixture(scope="session", autouse=True)
def _close_database_pools(django_db_setup: None, django_db_blocker: object) -> Iterator[None]:
    """The psycopg pool keeps connections open; close it so the test database can be dropped."""
    yield
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()
