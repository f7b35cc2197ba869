"""Celery entry points of the tenancy layer: ids in, one service call."""

from __future__ import annotations

from smtplib import SMTPException
from typing import Any

from celery import Task, shared_task


@shared_task(
    bind=True,
    ignore_result=True,
    acks_late=True,
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    max_retries=5,
)
def invite_deliver(self: Task[Any, Any], invite_id: int) -> None:
    """Send an invite's e-mail. Runs after the invite commits; running it twice sends once
    (the service claims the invite). Transient SMTP/network errors retry with backoff; the
    last attempt leaves the invite with delivery status "failed"."""
    from organizations.services.invites import invite_deliver as deliver

    deliver(invite_id=invite_id, final_attempt=self.request.retries >= (self.max_retries or 0))


@shared_task(
    ignore_result=True,
    acks_late=True,
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    max_retries=5,
)
def budget_soft_limit_notify(organization_id: int, scope: str, month: str) -> None:
    """E-mail the owners that a budget passed its soft limit. Queued by the web worker whose call
    crossed it; running it twice sends once (the service claims a notice row per scope and month).
    SMTP/network errors retry with backoff."""
    from organizations.services.budgets import budget_soft_limit_notify as notify

    notify(organization_id=organization_id, scope=scope, month=month)
