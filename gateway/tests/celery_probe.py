"""A task for tests only: reports what a worker reads, and from which database, into Redis.

Loaded by test workers with `celery worker --include gateway.tests.celery_probe`.
"""

from __future__ import annotations

from typing import Any

import orjson
from celery import shared_task

from gateway import context
from gateway.redis import sync_client


@shared_task(bind=True, name="gateway.tests.celery_probe.user_name_read")
def user_name_read(self: Any, user_id: int) -> None:
    from accounts.models import User

    users = User.objects.filter(pk=user_id)
    alias = users.db
    user = users.first()
    db_state = (context.current() or {}).get("db") or {}
    report = {"name": user.name if user else None, "alias": alias, "floor": db_state.get("floor")}
    client = sync_client()
    assert client is not None
    client.set(f"celery-probe:{self.request.id}", orjson.dumps(report), ex=60)
