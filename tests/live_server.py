"""Every way the tests run the gateway, in one place.

- `LiveGateway`: the real ASGI application under uvicorn in a thread of the test process, so it
  shares the test database (tests that use it need `django_db(transaction=True)` so the server's
  connections see committed rows).
- `GatewayProcess`: the gateway as an operating-system process tree, `python -m gateway.server`
  (uvicorn workers, or daphne with `server="daphne"`) or `python -m gateway.supervisor Procfile`.
- `CeleryWorkers`: `celery -A gateway worker` processes.

Processes share the pytest test database only on PostgreSQL (`database=True` skips on the embedded
default), and each waits for readiness by polling (a health check, a Celery ping), never by sleeping
a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import httpx
import uvicorn


def _skip(reason: str) -> NoReturn:
    # pytest is imported here, not at the top: the fakes that import free_port also run outside
    # the test suite (the compatibility matrix), where only the runtime packages are installed.
    import pytest

    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def shared_database_url() -> str:
    """The pytest test database as a DATABASE_URL for another process (PostgreSQL only: the
    embedded default's in-memory SQLite cannot be shared)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        _skip("a process shares the test database only on PostgreSQL (DATABASE_URL)")
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def _child_env(*, database: bool, extra: dict[str, str] | None) -> dict[str, str]:
    """The test process's environment without its database and Redis settings, then the test
    database and Redis db when asked for, then `extra`."""
    from django.conf import settings

    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DB_POSTGRESQL_", "DATABASE_", "REDIS_URL"))
    }
    env.update(GATEWAY_ENV="test", PYTHONUNBUFFERED="1")
    if database:
        env.update(DATABASE_URL=shared_database_url(), DATABASE_READ_FROM_REPLICAS="false")
        if settings.REDIS_URL:
            env["REDIS_URL"] = settings.REDIS_URL
    env.update(extra or {})
    return env


class LiveGateway:
    def __init__(self) -> None:
        from gateway.asgi import application

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            application, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveGateway:
        self.thread.start()
        if not wait_until(lambda: self.server.started, 15, interval=0.02):
            raise RuntimeError("the gateway did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class GatewayProcess:
    """One process tree started from the repository root, its output in a temporary file.

    `database=True`: on the test database and Redis db (skips unless PostgreSQL; with
    `needs_redis`, also unless REDIS_URL). `workers` sets WEB_CONCURRENCY, `server` SERVER.
    """

    def __init__(
        self,
        module: str = "gateway.server",
        *args: str,
        env: dict[str, str] | None = None,
        database: bool = False,
        needs_redis: bool = False,
        workers: int = 1,
        server: str = "uvicorn",
    ) -> None:
        from django.conf import settings

        if needs_redis and not settings.REDIS_URL:
            _skip("shared between processes through Redis; without REDIS_URL it is per process")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.data_dir = tempfile.mkdtemp(prefix="gateway-process-")
        self.log_path = Path(self.data_dir) / "output.log"
        self.env = _child_env(
            database=database,
            extra={
                "GATEWAY_DATA_DIR": self.data_dir,
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "WEB_CONCURRENCY": str(workers),
                "SERVER": server,
                **(env or {}),
            },
        )
        self.command = [sys.executable, "-m", module, *args]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90, ready: Path | None = None) -> GatewayProcess:
        """Start and wait for /healthcheck; with `ready`, also until every web worker has put a
        file there (PROMETHEUS_MULTIPROC_DIR), i.e. every worker has loaded the application."""
        from django.conf import settings

        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT
            )

        def up() -> bool:
            return self._healthy() and (ready is None or len(self.worker_pids(ready)) >= self.workers)

        if not wait_until(up, timeout, interval=0.2):
            self.stop()
            raise RuntimeError(f"{self.command} did not start:\n{self.output()}")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.command} exited:\n{self.output()}")
        try:
            return httpx.get(f"{self.url}/healthcheck", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def worker_pids(directory: Path, kind: str = "gauge_livesum") -> set[int]:
        """The web workers that wrote Prometheus samples of `kind` into `directory`."""
        return {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob(f"{kind}_*.db")}

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def started_pids(self, name: str) -> list[int]:
        """Pids the supervisor reported for one Procfile entry, oldest first."""
        return [int(pid) for pid in re.findall(rf"supervisor: {name} started \(pid (\d+)\)", self.output())]

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        # A supervisor killed above leaves its children running, each in its own process group.
        for pid in {int(p) for p in re.findall(r"supervisor: \w+ started \(pid (\d+)\)", self.output())}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


class CeleryWorkers:
    """`count` solo Celery workers on the test database and Redis db (skips without both)."""

    def __init__(self, count: int, *, prefix: str = "test") -> None:
        self.names = [f"{prefix}-{index}@{os.uname().nodename}" for index in range(count)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self.log_dir = Path(tempfile.mkdtemp(prefix="celery-workers-"))

    def start(self, *, flush: bool = True) -> CeleryWorkers:
        from django.conf import settings

        from gateway.celery import app
        from gateway.redis import sync_client

        redis = sync_client()
        if redis is None:
            _skip("Celery worker processes need Redis (REDIS_URL) as the broker they share")
        env = _child_env(
            database=True,
            extra={
                "MODEL_REGISTRY_REFRESH_SECONDS": "0",  # tests register providers between calls
                "USAGE_FLUSH_INTERVAL_SECONDS": "0.1",
                "RESPONSES_CANCEL_POLL_SECONDS": "0.1",
                "LOG_LEVEL": "WARNING",
            },
        )
        if flush:  # our own Redis db: no stale tasks from an earlier run
            redis.flushdb()
        for name in self.names:
            command = [
                *(sys.executable, "-m", "celery", "-A", "gateway", "worker", "-P", "solo", "-n", name),
                *("--without-gossip", "--without-mingle", "-l", "WARNING"),
            ]
            with (self.log_dir / f"{name}.log").open("wb") as log:
                self.processes.append(
                    subprocess.Popen(
                        command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
                    )
                )

        def answering() -> bool:
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"a Celery worker exited:\n{self.output()}")
            replies = app.control.ping(destination=self.names, timeout=1.0) or []
            return {name for reply in replies for name in reply} >= set(self.names)

        try:
            started = wait_until(answering, 60, interval=0.1)
        except RuntimeError:
            started = False
        if not started:
            self.stop()
            raise RuntimeError(f"the Celery workers did not start:\n{self.output()}")
        return self

    def output(self) -> str:
        return "\n---\n".join(
            path.read_text(errors="replace")[-4000:] for path in sorted(self.log_dir.glob("*.log"))
        )

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
