"""The gateway under a real `uvicorn gateway.asgi:application --workers N` (or daphne) subprocess.

It talks to the pytest test database, so it only sees committed rows: tests that use it are
`django_db(transaction=True)`. Configuration goes in through the environment, as in production.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]


class GatewayProcess:
    def __init__(self, env: dict[str, str], *, workers: int = 2, server: str = "uvicorn") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.workers = workers
        self.server = server
        self.log = tempfile.NamedTemporaryFile(prefix="mcp-gateway-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        if self.server == "daphne":  # no ASGI lifespan at all: the MCP runtime starts lazily
            command = [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "gateway.asgi:application",
            ]
        else:
            command = [
                sys.executable, "-m", "uvicorn", "gateway.asgi:application",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.workers), "--log-level", "warning",
            ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthcheck", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the gateway did not start:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # uvicorn's supervisor stops its own workers
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()
