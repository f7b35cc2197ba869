"""Reads go to a replica, writes to the primary, and a read after a write goes to the primary.

Needs a replica alias (DB_POSTGRESQL_READ1_DSN), as .ci/run configures: two connection
aliases onto PostgreSQL. On the embedded default there is no replica to route to.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from gateway import context

pytestmark = [
    pytest.mark.django_db(transaction=True, databases="__all__"),
    pytest.mark.skipif(
        not settings.DATABASE_REPLICAS, reason="no replica configured (DB_POSTGRESQL_READ1_DSN)"
    ),
]


@pytest.fixture(autouse=True)
def _replica_reads(settings):  # type: ignore[no-untyped-def]
    settings.DATABASE_READ_FROM_REPLICAS = True


def _queries_on(alias: str) -> CaptureQueriesContext:
    return CaptureQueriesContext(connections[alias])


def test_read_goes_to_replica_and_write_to_primary() -> None:
    replica = settings.DATABASE_REPLICAS[0]
    User.objects.create_user("seed@example.com")  # outside a request: nothing to stick to
    token = context.begin(request_id="r1")
    try:
        with _queries_on(replica) as on_replica, _queries_on("default") as on_primary:
            assert User.objects.filter(email="seed@example.com").exists()
        assert len(on_replica.captured_queries) == 1
        assert len(on_primary.captured_queries) == 0
    finally:
        context.end(token)

    token = context.begin(request_id="r2")
    try:
        with _queries_on(replica) as on_replica, _queries_on("default") as on_primary:
            User.objects.create_user("written@example.com")
        assert len(on_primary.captured_queries) >= 1
        assert len(on_replica.captured_queries) == 0
    finally:
        context.end(token)


def test_read_after_write_in_same_request_goes_to_primary() -> None:
    replica = settings.DATABASE_REPLICAS[0]
    token = context.begin(request_id="r3")
    try:
        User.objects.create_user("fresh@example.com")
        with _queries_on(replica) as on_replica, _queries_on("default") as on_primary:
            assert User.objects.filter(email="fresh@example.com").exists()
        assert len(on_replica.captured_queries) == 0
        assert len(on_primary.captured_queries) == 1
    finally:
        context.end(token)


def test_read_inside_transaction_goes_to_primary() -> None:
    replica = settings.DATABASE_REPLICAS[0]
    token = context.begin(request_id="r4")
    try:
        with transaction.atomic(), _queries_on(replica) as on_replica:
            User.objects.filter(email="nobody@example.com").exists()
        assert len(on_replica.captured_queries) == 0
    finally:
        context.end(token)
