"""Real `celery -A gateway worker` subprocesses against the test database and our Redis db."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import pytest
from django.conf import settings
from django.db import connection

from gateway.celery import app
from gateway.redis import sync_client

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    def __init__(self, count: int) -> None:
        self.names = [f"responses-test-{index}@{os.uname().nodename}" for index in range(count)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []

    def _env(self) -> dict[str, str]:
        db = connection.settings_dict
        dsn = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        if db.get("PASSWORD"):
            dsn = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DB_POSTGRESQL_")}
        env.update(
            GATEWAY_ENV="test",
            DATABASE_URL=dsn,  # the pytest test database, where the live gateway writes
            REDIS_URL=settings.REDIS_URL,
            MODEL_REGISTRY_REFRESH_SECONDS="0",  # tests register providers between calls
            USAGE_FLUSH_INTERVAL_SECONDS="0.1",
            RESPONSES_CANCEL_POLL_SECONDS="0.1",
            LOG_LEVEL="WARNING",
        )
        return env

    def start(self, *, flush: bool = True) -> Workers:
        redis = sync_client()
        if redis is None or connection.vendor == "sqlite":
            # Worker processes cannot see an in-memory SQLite test database, and without Redis
            # there is no broker they share with the test process.
            pytest.skip("Celery worker processes need PostgreSQL and Redis (DATABASE_URL, REDIS_URL)")
        if flush:  # our own Redis db: no stale tasks from an earlier run
            redis.flushdb()
        for name in self.names:
            log = tempfile.TemporaryFile()  # noqa: SIM115 -- open for the workers' lifetime, closed in stop()
            self.logs.append(log)
            self.processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "gateway",
                        "worker",
                        "-P",
                        "solo",
                        "-n",
                        name,
                        "--without-gossip",
                        "--without-mingle",
                        "-l",
                        "WARNING",
                    ],
                    cwd=ROOT,
                    env=self._env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replies = app.control.ping(destination=self.names, timeout=1.0) or []
            if {name for reply in replies for name in reply} >= set(self.names):
                return self
            if any(p.poll() is not None for p in self.processes):
                break
        self.stop()
        raise RuntimeError(f"the Celery workers did not start:\n{self.output()}")

    def output(self) -> str:
        text = []
        for log in self.logs:
            log.seek(0)
            text.append(log.read().decode(errors="replace")[-4000:])
        return "\n---\n".join(text)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()
