"""The gateway as real OS processes: `python -m gateway.server` or `python -m gateway.supervisor`.

Processes share the pytest test database only on PostgreSQL (tests that need rows use
`django_db(transaction=True)` and skip on the embedded default); a bare web server answering
`/healthcheck` needs no database and runs in both modes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from django.conf import settings

from tests.live_server import free_port


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class GatewayProcess:
    """One process tree started from the repository root, its output in a temporary file."""

    def __init__(
        self, module: str, *args: str, env: dict[str, str] | None = None, database_url: str = ""
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tempfile.mkdtemp(prefix="gateway-process-")
        self.log_path = Path(self.data_dir) / "output.log"
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DB_POSTGRESQL_", "DATABASE_", "REDIS_URL"))
        }
        base.update(
            GATEWAY_ENV="test",
            GATEWAY_DATA_DIR=self.data_dir,
            HOST="127.0.0.1",
            PORT=str(self.port),
            PYTHONUNBUFFERED="1",
        )
        if database_url:
            base.update(DATABASE_URL=database_url, DATABASE_READ_FROM_REPLICAS="false")
        if database_url and settings.REDIS_URL:
            base["REDIS_URL"] = settings.REDIS_URL
        base.update(env or {})
        self.env = base
        self.command = [sys.executable, "-m", module, *args]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> GatewayProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT
            )
        if not wait_until(self._healthy, timeout, interval=0.2):
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
