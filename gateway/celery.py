"""The Celery app. Worker and beat read their settings from Django's (CELERY_* names)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, bootsteps
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_init, worker_process_init
from click import Option

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
# Celery's Django fixup runs Django's system checks when a worker starts; they load the URLconf
# and with it every view (17 MB kept in the worker for nothing). `manage.py migrate`, which
# `make run` and the deployments' migrate job run first, runs them.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("gateway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class BeatThread(bootsteps.StartStopStep):
    """`celery worker --beat-thread`: the beat scheduler as a thread of this worker.

    `make run` runs one Celery process (thread pool, scheduler inside) instead of a worker, its
    pool processes and a beat process: each is a Python process with Django loaded, about 100 MB
    apiece at rest. Celery's own `-B` forks the scheduler into a process of its own. Run exactly
    one scheduler per deployment: the scaled-out manifests keep beat as its own single replica.
    """

    label = "Beat thread"
    conditional = True

    def __init__(self, parent: Any, beat_thread: bool = False, **kwargs: Any) -> None:
        self.enabled = bool(beat_thread)
        self.service: Any = None
        super().__init__(parent, **kwargs)

    def create(self, parent: Any) -> None:
        from celery.beat import EmbeddedService

        self.service = EmbeddedService(parent.app, thread=True)

    def start(self, parent: Any) -> None:
        self.service.start()

    def stop(self, parent: Any) -> None:
        self.service.stop()


app.user_options["worker"].add(
    Option(("--beat-thread",), is_flag=True, default=False, help="Run the beat scheduler in a thread.")
)
app.steps["worker"].add(BeatThread)

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


@worker_init.connect
def _start_profiling_without_pool_processes(sender: Any = None, **_: object) -> None:
    """A thread or solo pool (`make run`) runs tasks in the worker process itself."""
    if "prefork" not in str(getattr(sender, "pool_cls", "prefork")):
        _start_profiling()
