"""`make run`'s process tree for real: `python -m gateway.supervisor Procfile` (web, and the Celery
worker with the beat scheduler in a thread).

One run of the tree, in order: the Celery worker is SIGKILLed (the web keeps answering, the
worker comes back, takes tasks and schedules the periodic ones again), then streams are opened and the supervisor gets SIGTERM
(the listening socket closes at once, 20 s streams finish with [DONE], streams longer than the
drain end with an error event, every usage row is written, exit status 0).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from inference.models import Provider, UsageRecord
from inference.tests.fake_upstream import FakeUpstream
from organizations.tests.factories import make_api_key
from tests.fixtures import register
from tests.live_server import GatewayProcess, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DRAIN_SECONDS = 24
FINISHING = 6  # streams of 20 s: they finish within the drain
CUT = 2  # streams of 100 s: the drain ends them


@pytest.fixture
def needs_postgres_and_redis() -> None:
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip("the processes share the test database and the Celery broker only on PostgreSQL + Redis")


class _Stream(threading.Thread):
    def __init__(self, url: str, key: str, model: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.model = url, key, model
        self.first_chunk = threading.Event()
        self.text = ""
        self.error: BaseException | None = None

    def run(self) -> None:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": "count slowly"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        try:
            with httpx.stream(
                "POST",
                f"{self.url}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {self.key}"},
                timeout=httpx.Timeout(10, read=60),
            ) as answer:
                for part in answer.iter_text():
                    self.text += part
                    self.first_chunk.set()
        except BaseException as exc:
            self.error = exc

    def events(self) -> list[str]:
        return [event.removeprefix("data: ") for event in self.text.split("\n\n") if event.strip()]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


def _slow_upstream(make_upstream: Callable[..., FakeUpstream], model: str, seconds: float) -> FakeUpstream:
    upstream = make_upstream([model])
    upstream.behaviour[model] = "slow_stream"
    upstream.delay = seconds / 200  # slow_stream sends 200 chunks
    register(upstream, name=model)
    return upstream


def test_make_run_restarts_a_killed_worker_and_drains_streams_on_sigterm(
    needs_postgres_and_redis: None, make_upstream: Callable[..., FakeUpstream]
) -> None:
    from gateway.celery import app as celery_app

    _slow_upstream(make_upstream, "twenty-seconds", 20)
    _slow_upstream(make_upstream, "hundred-seconds", 100)
    key_row: Any
    key_row, key = make_api_key()
    tree = GatewayProcess(
        "gateway.supervisor",
        "Procfile",
        database=True,
        env={
            "WEB_CONCURRENCY": "2",
            "CELERY_CONCURRENCY": "1",
            "SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
            "MODEL_REGISTRY_REFRESH_SECONDS": "0",
            "MODEL_HEALTH_INTERVAL_SECONDS": "1",
            "USAGE_FLUSH_INTERVAL_SECONDS": "0.1",
            "LOG_LEVEL": "WARNING",
        },
    ).start()
    try:
        # --- The Celery worker dies: it is restarted, the web never stops answering -------------
        assert wait_until(lambda: "The gateway is up on" in tree.output(), 30), tree.output()
        assert f"Swagger UI   {tree.url}/api/swagger" in tree.output()
        assert "No model server is configured" not in tree.output()  # two providers are registered
        assert wait_until(lambda: celery_app.control.ping(timeout=0.5), 30), (
            "the worker never answered a ping"
        )
        (first_worker,) = tree.started_pids("worker")
        os.kill(first_worker, signal.SIGKILL)
        answers: list[int] = []

        def restarted() -> bool:
            answers.append(httpx.get(f"{tree.url}/healthcheck", timeout=2).status_code)
            return len(tree.started_pids("worker")) == 2

        assert wait_until(restarted, 15, interval=0.1), tree.output()
        assert set(answers) == {200}
        assert "worker exited with status -9" in tree.output()
        assert wait_until(lambda: celery_app.control.ping(timeout=0.5), 30), "the new worker never answered"
        # Nothing else schedules the health polls: the restarted worker's beat thread does.
        restarted_at = timezone.now()
        assert wait_until(lambda: Provider.objects.filter(last_check_at__gt=restarted_at).count() == 2, 30), (
            "no health poll was scheduled after the restart"
        )

        # --- SIGTERM with streams in flight ------------------------------------------------------
        streams = [_Stream(tree.url, key, "twenty-seconds") for _ in range(FINISHING)]
        streams += [_Stream(tree.url, key, "hundred-seconds") for _ in range(CUT)]
        for stream in streams:
            stream.start()
        for stream in streams:
            assert stream.first_chunk.wait(20), (stream.error, tree.output()[-3000:])
        signalled = time.monotonic()
        tree.signal(signal.SIGTERM)
        assert wait_until(lambda: _refused(tree.port), 3), "new connections were still accepted"
        status = tree.wait(timeout=DRAIN_SECONDS + 20)
        stopped_after = time.monotonic() - signalled
    finally:
        tree.stop()
    output = tree.output()
    assert status == 0, output[-3000:]
    assert stopped_after < DRAIN_SECONDS + 10
    for stream in streams:
        stream.join(timeout=5)
        assert stream.error is None, stream.error
    for stream in streams[:FINISHING]:
        assert stream.events()[-1] == "[DONE]", stream.text[-500:]
    for stream in streams[FINISHING:]:
        last = orjson.loads(stream.events()[-1])
        assert last["error"]["code"] == "server_shutting_down", stream.text[-500:]
    assert "Traceback" not in output, output[-3000:]

    def usage_rows() -> list[tuple[str, str]]:
        # From the primary: CI runs this against a standby 300 ms behind, and the last rows are
        # written at shutdown, so a replica read could miss them after a primary read saw them.
        rows = UsageRecord.objects.using("default").filter(api_key_id=key_row.pk)
        return list(rows.values_list("model", "outcome"))

    assert wait_until(lambda: len(usage_rows()) == FINISHING + CUT, 5), usage_rows()
    rows = usage_rows()
    assert sorted(outcome for model, outcome in rows if model == "twenty-seconds") == ["success"] * FINISHING
    assert len([model for model, _ in rows if model == "hundred-seconds"]) == CUT
