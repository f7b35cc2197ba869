"""A Celery task enqueued right after a write reads that write, on a real worker whose reads may
go to the delayed standby: the task's message carries the enqueuer's position."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.db import connections, transaction

from accounts.models import User
from gateway import context, db_router
from gateway.celery import app
from gateway.redis import sync_client
from gateway.tests.celery_probe import user_name_read
from gateway.tests.standby import requires_standby, wait_replica_caught_up

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__")]


def _dsn(alias: str) -> str:
    db = connections[alias].settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER'] or 'postgres'}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def replica_worker() -> Iterator[str]:
    """One worker process on its own queue, reading from the standby like the web does."""
    if not settings.REDIS_URL:
        pytest.skip("a worker process needs a Redis broker (REDIS_URL)")
    if not settings.DATABASE_REPLICAS:
        pytest.skip("needs a read replica (DB_POSTGRESQL_READ1_DSN; scripts/pg_standby.sh makes one)")
    queue = f"replica-test-{os.getpid()}"
    name = f"{queue}@{os.uname().nodename}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_POSTGRESQL_", "DATABASE_"))}
    env.update(
        GATEWAY_ENV="test",
        DATABASE_URL=_dsn("default"),
        DB_POSTGRESQL_READ1_DSN=_dsn(settings.DATABASE_REPLICAS[0]),
        REDIS_URL=settings.REDIS_URL,
        LOG_LEVEL="WARNING",
    )
    log = tempfile.TemporaryFile()  # noqa: SIM115 -- closed below
    process = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "celery",
                "-A",
                "gateway",
                "worker",
                "-P",
                "solo",
                "-Q",
                queue,
                "-n",
                name,
            ),
            *(
                "--include",
                "gateway.tests.celery_probe",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
            ),
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if app.control.ping(destination=[name], timeout=1.0):
                break
        else:
            log.seek(0)
            raise RuntimeError(f"the worker did not start:\n{log.read().decode(errors='replace')[-3000:]}")
        yield queue
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _report(task_id: str, timeout: float = 30) -> dict[str, Any]:
    client = sync_client()
    assert client is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = client.get(f"celery-probe:{task_id}")
        if raw is not None:
            report: dict[str, Any] = orjson.loads(raw)
            return report
        time.sleep(0.02)
    raise AssertionError("the task did not report")


@requires_standby
def test_task_enqueued_after_a_write_reads_it(replica_worker: str) -> None:
    replica = settings.DATABASE_REPLICAS[0]
    user = User.objects.create_user("tasks@example.com")
    wait_replica_caught_up(replica)
    for round_ in range(5):
        token = context.begin(request_id=f"enqueue-{round_}")
        try:
            db_router.principal_bind(user_id=user.pk, api_key_id=None, organization_id=None)
            with transaction.atomic():
                User.objects.filter(pk=user.pk).update(name=f"v{round_}")
            result = user_name_read.apply_async((user.pk,), queue=replica_worker)
            written_at = (context.current() or {})["db"]["last_write_lsn"]
        finally:
            context.end(token)
        report = _report(result.id)
        assert report["name"] == f"v{round_}", report
        assert report["floor"] is not None
        assert report["floor"] >= written_at  # the position travelled in the message

    # Once the standby has the write, the same kind of task reads from it (the worker learns the
    # standby's new position from a probe that a read behind it started in the background).
    wait_replica_caught_up(replica)
    deadline = time.monotonic() + 10
    aliases = []
    while time.monotonic() < deadline:
        token = context.begin(request_id="enqueue-read-only")
        try:
            db_router.principal_bind(user_id=user.pk, api_key_id=None, organization_id=None)
            result = user_name_read.apply_async((user.pk,), queue=replica_worker)
        finally:
            context.end(token)
        report = _report(result.id)
        assert report["name"] == "v4", report
        aliases.append(report["alias"])
        if report["alias"] == replica:
            break
    assert aliases[-1] == replica, aliases
