from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gateway.redis import sync_client
from inference.services import REGISTRY_VERSION_KEY
from tests.live_server import CeleryWorkers


@pytest.fixture(scope="module")
def celery_workers(django_db_setup: None, django_db_blocker) -> Iterator[CeleryWorkers]:  # type: ignore[no-untyped-def]
    """Two real worker processes for one test module. Not longer: they consume the shared
    Celery queue, and other apps' tests may enqueue tasks they expect nobody to run."""
    with django_db_blocker.unblock():
        workers = CeleryWorkers(2).start()
    yield workers
    workers.stop()


@pytest.fixture(autouse=True)
def _worker_registry_version() -> None:
    """The root conftest clears the cache, which flushes our whole Redis db, registry version
    counter included: the next test's bumps would count 1, 2 again and a worker process holding
    the previous test's providers would see "no change". Start each test from a fresh value."""
    redis = sync_client()
    if redis is not None:
        redis.set(REGISTRY_VERSION_KEY, time.time_ns())
