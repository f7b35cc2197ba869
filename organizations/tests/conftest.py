"""Fixtures for the administration API tests: a real SMTP sink and e-mail pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from organizations.tests.smtp_sink import SmtpSink


@pytest.fixture(scope="session")
def _smtp_server() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def smtp_sink(_smtp_server: SmtpSink, settings: Any, eager_celery: None) -> SmtpSink:
    """Django's SMTP backend talking to the sink; Celery tasks run eagerly (no worker in tests)."""
    _smtp_server.reset()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = _smtp_server.host, _smtp_server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.INVITE_REDIRECT_URL = "https://app.example/invite"
    return _smtp_server


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Celery copied its configuration at start-up, so flip the app's own switch too."""
    from gateway.celery import app

    saved = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = saved
