"""Shared test setup. Services are real: PostgreSQL and Redis when DATABASE_URL / REDIS_URL are
set (as .ci/run does), the embedded SQLite/local-memory default otherwise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

# Fixtures more than one app's tests use live in plugins, not in another app's conftest.
pytest_plugins = ["tests.fixtures"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every database test may read from the replicas, as the application does: a read-replica
    alias (DB_POSTGRESQL_READ1_DSN, e.g. scripts/pg_standby.sh's standby) is allowed wherever the
    primary is. The router keeps reads inside a test's transaction on the primary."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is None or "databases" in marker.kwargs:
            continue
        item.add_marker(
            pytest.mark.django_db(*marker.args, **marker.kwargs, databases="__all__"), append=False
        )


@pytest.fixture(autouse=True)
def _test_settings(settings: pytest.FixtureRequest) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # type: ignore[attr-defined]


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
