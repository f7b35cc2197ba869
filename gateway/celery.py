"""The Celery app. Worker and beat read their settings from Django's (CELERY_* names)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

app = Celery("gateway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _start_profiling(**_: object) -> None:
    """Each pool process sends its own profiles when PYROSCOPE_SERVER_ADDRESS is set."""
    from gateway.profiling import start_continuous

    start_continuous("celery-worker")
