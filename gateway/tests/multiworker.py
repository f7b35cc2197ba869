"""The real gateway as `uvicorn gateway.asgi:application --workers N` in a subprocess.

It talks to the pytest test database, so tests that use it need `django_db(transaction=True)`:
the server only sees committed rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from tests.live_server import free_port


def _database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


class UvicornWorkers:
    def __init__(
        self, *, workers: int = 2, env: dict[str, str] | None = None, needs_redis: bool = False
    ) -> None:
        # The embedded default's test database (SQLite in memory) cannot be shared with another
        # process; .ci/run provides PostgreSQL and Redis.
        if connection.vendor != "postgresql":
            pytest.skip("a server process shares the test database only on PostgreSQL")
        if needs_redis and not settings.REDIS_URL:
            pytest.skip("shared between processes through Redis; without REDIS_URL it is per process")
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="uvicorn-", suffix=".log", delete=False)  # noqa: SIM115
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DB_POSTGRESQL_", "DATABASE_"))}
        base.update(
            GATEWAY_ENV="test",
            DATABASE_URL=_database_url(),
            DATABASE_READ_FROM_REPLICAS="false",
            REDIS_URL=settings.REDIS_URL,
            PYTHONUNBUFFERED="1",
        )
        base.update(env or {})
        self.env = base
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready: Path | None = None, timeout: float = 60) -> UvicornWorkers:
        """Start and wait for /healthcheck; with `ready`, also until every worker has put a
        file there (PROMETHEUS_MULTIPROC_DIR), i.e. every worker has loaded the application."""
        command = [
            *(sys.executable, "-m", "uvicorn", "gateway.asgi:application"),
            *("--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)),
            *("--lifespan", "on", "--no-access-log", "--log-level", "warning"),
        ]
        self.process = subprocess.Popen(
            command, env=self.env, cwd=settings.BASE_DIR, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited:\n{self.output()}")
            try:
                up = httpx.get(f"{self.url}/healthcheck", timeout=2).status_code == 200
            except httpx.HTTPError:
                up = False
            if up and (ready is None or len(self.worker_pids(ready)) >= self.workers):
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"uvicorn did not start:\n{self.output()}")

    @staticmethod
    def worker_pids(directory: Path, kind: str = "gauge_livesum") -> set[int]:
        return {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob(f"{kind}_*.db")}

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
