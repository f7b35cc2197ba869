"""The Celery app. Worker and beat read their settings from Django's (CELERY_* names)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

app = Celery("gateway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Read-your-writes for tasks: a task enqueued after a write must not read a replica that has not
# replayed it. The enqueuer's principals and write position travel in this message header, and
# the task's reads follow the same rule as the request's (gateway.db_router).
DB_HEADER = "gateway_db"


@before_task_publish.connect
def _carry_read_position(headers: dict[str, Any] | None = None, **_: object) -> None:
    from gateway.db_router import carried_state

    carried = carried_state()
    if carried is not None and headers is not None:
        headers[DB_HEADER] = carried


_task_contexts: dict[str, Any] = {}


@task_prerun.connect
def _open_task_context(task_id: str | None = None, task: Any = None, **_: object) -> None:
    from gateway import context
    from gateway.db_router import carried_state_adopt

    if task_id is None:
        return
    _task_contexts[task_id] = context.begin(task_id=task_id)
    if task is not None:
        # A worker merges message headers into the request; `apply(headers=...)` keeps them apart.
        request = task.request
        carried_state_adopt(
            getattr(request, DB_HEADER, None) or (getattr(request, "headers", None) or {}).get(DB_HEADER)
        )


@task_postrun.connect
def _close_task_context(task_id: str | None = None, **_: object) -> None:
    from gateway import context

    token = _task_contexts.pop(task_id or "", None)
    if token is not None:
        context.end(token)


@worker_process_init.connect
def _start_profiling(**_: object) -> None:
    """Each pool process sends its own profiles when PYROSCOPE_SERVER_ADDRESS is set."""
    from gateway.profiling import start_continuous

    start_continuous("celery-worker")
