"""Read routing against a real streaming standby that applies WAL late.

`scripts/pg_standby.sh start DIR` gives a primary and a standby with recovery_min_apply_delay
(.ci/run does it); DATABASE_URL names the primary, DB_POSTGRESQL_READ1_DSN the standby. The test
runner creates test_<name> on the primary, the standby replicates it, and the replica alias
reads that same database name on the standby.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from gateway import context, db_router
from gateway.tests.standby import requires_standby, wait_replica_caught_up

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__")]


def _queries_on(alias: str) -> CaptureQueriesContext:
    return CaptureQueriesContext(connections[alias])


@pytest.fixture
def request_context() -> Iterator[None]:
    token = context.begin(request_id="test")
    try:
        yield
    finally:
        context.end(token)


def _as_request(user: User | None = None) -> object:
    """A fresh request context, authenticated as `user` when given."""
    token = context.begin(request_id="test")
    if user is not None:
        db_router.principal_bind(user_id=user.pk, api_key_id=None, organization_id=None)
    return token


@requires_standby
def test_read_of_a_caught_up_principal_goes_to_the_replica() -> None:
    replica = settings.DATABASE_REPLICAS[0]
    user = User.objects.create_user("seed@example.com")
    wait_replica_caught_up(replica)
    token = _as_request(user)
    try:
        with _queries_on(replica) as on_replica, _queries_on("default") as on_primary:
            assert User.objects.filter(email="seed@example.com").exists()
        assert len(on_replica.captured_queries) == 1
        assert len(on_primary.captured_queries) == 0
    finally:
        context.end(token)  # type: ignore[arg-type]


@requires_standby
def test_a_principals_write_is_read_from_the_primary_until_the_replica_has_it() -> None:
    replica = settings.DATABASE_REPLICAS[0]
    user = User.objects.create_user("writer@example.com")
    wait_replica_caught_up(replica)

    token = _as_request(user)  # the request that writes
    try:
        with transaction.atomic():
            User.objects.filter(pk=user.pk).update(name="renamed")
    finally:
        context.end(token)  # type: ignore[arg-type]

    # The next request, at once: the standby holds the change back, so the primary answers.
    token = _as_request(user)
    try:
        with _queries_on(replica) as on_replica:
            assert User.objects.get(pk=user.pk).name == "renamed"
        assert on_replica.captured_queries == []
    finally:
        context.end(token)  # type: ignore[arg-type]

    # Once the standby has replayed the write, the same principal reads from it again.
    wait_replica_caught_up(replica)
    token = _as_request(user)
    try:
        with _queries_on(replica) as on_replica:
            assert User.objects.get(pk=user.pk).name == "renamed"
        assert len(on_replica.captured_queries) == 1
    finally:
        context.end(token)  # type: ignore[arg-type]


@requires_standby
def test_another_principals_reads_stay_on_the_replica_while_one_writes() -> None:
    replica = settings.DATABASE_REPLICAS[0]
    writer = User.objects.create_user("a@example.com")
    reader = User.objects.create_user("b@example.com")
    wait_replica_caught_up(replica)
    token = _as_request(writer)
    try:
        User.objects.filter(pk=writer.pk).update(name="changed")
    finally:
        context.end(token)  # type: ignore[arg-type]
    token = _as_request(reader)
    try:
        with _queries_on(replica) as on_replica:
            assert User.objects.filter(pk=reader.pk).exists()
        assert len(on_replica.captured_queries) == 1
    finally:
        context.end(token)  # type: ignore[arg-type]


@requires_standby
def test_authorization_reads_wait_for_every_write() -> None:
    """A key revoked by anyone is never read back as active from a replica that lags."""
    replica = settings.DATABASE_REPLICAS[0]
    writer = User.objects.create_user("admin@example.com")
    reader = User.objects.create_user("member@example.com")
    wait_replica_caught_up(replica)
    token = _as_request(writer)
    try:
        User.objects.filter(pk=reader.pk).update(is_active=False)
    finally:
        context.end(token)  # type: ignore[arg-type]
    token = _as_request(reader)
    try:
        with db_router.authoritative(), _queries_on(replica) as on_replica:
            assert not User.objects.get(pk=reader.pk).is_active
        assert on_replica.captured_queries == []
    finally:
        context.end(token)  # type: ignore[arg-type]


@requires_standby
def test_reads_outside_requests_see_every_write() -> None:
    replica = settings.DATABASE_REPLICAS[0]
    user = User.objects.create_user("script@example.com")
    with _queries_on(replica) as on_replica:
        assert User.objects.filter(pk=user.pk).exists()
    assert on_replica.captured_queries == []


@requires_standby
def test_read_after_write_in_same_request_goes_to_primary(request_context: None) -> None:
    replica = settings.DATABASE_REPLICAS[0]
    wait_replica_caught_up(replica)
    User.objects.create_user("fresh@example.com")
    with _queries_on(replica) as on_replica, _queries_on("default") as on_primary:
        assert User.objects.filter(email="fresh@example.com").exists()
    assert len(on_replica.captured_queries) == 0
    assert len(on_primary.captured_queries) == 1


@requires_standby
def test_read_inside_transaction_goes_to_primary(request_context: None) -> None:
    replica = settings.DATABASE_REPLICAS[0]
    with transaction.atomic(), _queries_on(replica) as on_replica:
        User.objects.filter(email="nobody@example.com").exists()
    assert len(on_replica.captured_queries) == 0


@requires_standby
def test_a_replica_past_the_lag_bound_is_skipped(settings) -> None:  # type: ignore[no-untyped-def]
    replica = settings.DATABASE_REPLICAS[0]
    wait_replica_caught_up(replica)
    status = db_router.monitor.probe(replica)
    assert status.online
    assert status.replay_lsn is not None
    # A reading older than the bound allows: out of rotation, whatever its replay position.
    db_router.monitor.remember(
        db_router.ReplicaStatus(replica, True, status.replay_lsn, 60.0, time.monotonic() + 3600)
    )
    try:
        token = _as_request()
        try:
            with _queries_on(replica) as on_replica:
                User.objects.filter(email="x@example.com").exists()
            assert on_replica.captured_queries == []
        finally:
            context.end(token)  # type: ignore[arg-type]
    finally:
        db_router.monitor.probe(replica)


def test_without_replicas_no_position_is_recorded(settings, request_context: None) -> None:  # type: ignore[no-untyped-def]
    settings.DATABASE_REPLICAS = []
    with _queries_on("default") as on_primary:
        User.objects.create_user("plain@example.com")
        assert User.objects.filter(email="plain@example.com").exists()
    assert not any("wal" in query["sql"].lower() for query in on_primary.captured_queries)


def test_lsn_text_round_trip() -> None:
    for text in ("0/0", "0/3431DA8", "16/B374D848", "FFFFFFFF/FFFFFFFF"):
        value = db_router.lsn_parse(text)
        assert value is not None
        assert db_router.lsn_format(value) == text
    assert db_router.lsn_parse("1/0") > db_router.lsn_parse("0/FFFFFFFF")  # type: ignore[operator]


@requires_standby
def test_metrics_show_lag_and_primary_fallback_reads() -> None:
    from prometheus_client import REGISTRY

    replica = settings.DATABASE_REPLICAS[0]
    user = User.objects.create_user("metrics@example.com")
    wait_replica_caught_up(replica)
    lag = REGISTRY.get_sample_value("gateway_db_replica_lag_seconds", {"replica": replica})
    assert lag is not None
    assert 0 <= lag < 5

    def fallbacks() -> float:
        return (
            REGISTRY.get_sample_value("gateway_db_primary_fallback_reads_total", {"reason": "replica_behind"})
            or 0.0
        )

    before = fallbacks()
    token = _as_request(user)
    try:
        User.objects.filter(pk=user.pk).update(name="counted")
    finally:
        context.end(token)  # type: ignore[arg-type]
    token = _as_request(user)
    try:
        User.objects.filter(pk=user.pk).exists()
    finally:
        context.end(token)  # type: ignore[arg-type]
    assert fallbacks() == before + 1


@requires_standby
def test_reads_go_to_the_primary_while_redis_cannot_be_asked(settings) -> None:  # type: ignore[no-untyped-def]
    """Nothing then proves a replica has a principal's writes: the primary answers, and the
    replica is used again once Redis answers."""
    from prometheus_client import REGISTRY

    from gateway.redis import sync_client
    from tests.live_server import free_port

    if not settings.REDIS_URL:
        pytest.skip("without REDIS_URL the positions live in the process")
    replica = settings.DATABASE_REPLICAS[0]
    user = User.objects.create_user("redis-down@example.com")
    wait_replica_caught_up(replica)

    def unknown() -> float:
        return (
            REGISTRY.get_sample_value(
                "gateway_db_primary_fallback_reads_total", {"reason": "positions_unknown"}
            )
            or 0
        )

    before = unknown()
    working_url = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    sync_client.cache_clear()
    try:
        token = _as_request(user)
        try:
            with _queries_on(replica) as on_replica:
                assert User.objects.filter(pk=user.pk).exists()
            assert on_replica.captured_queries == []
            assert unknown() == before + 1
        finally:
            context.end(token)  # type: ignore[arg-type]
    finally:
        settings.REDIS_URL = working_url
        sync_client.cache_clear()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the process tries Redis again after a short pause
        token = _as_request(user)
        try:
            with _queries_on(replica) as on_replica:
                User.objects.filter(pk=user.pk).exists()
        finally:
            context.end(token)  # type: ignore[arg-type]
        if on_replica.captured_queries:
            break
        time.sleep(0.05)
    assert on_replica.captured_queries
