from __future__ import annotations

from celery import shared_task


@shared_task(ignore_result=True, acks_late=True)
def response_generate(response_pk: int) -> None:
    """Run one background response, enqueued after its row was committed as `queued`.

    Running it twice is safe: the service claims the row with a conditional UPDATE, so a
    redelivered task finds it no longer queued and returns.
    """
    from responses import services

    services.response_run_background(response_pk=response_pk)


@shared_task(ignore_result=True)
def responses_sweep() -> None:
    """Beat, every few seconds: re-queue or fail background responses whose worker died (see the service)."""
    from responses import services

    services.responses_sweep()
