"""Redis stops under load: API-key checks go on from the process cache and the database, no
request gets a bare 500, and the gateway uses Redis again once it is back, without a restart.

A throw-away redis-server on a free port (never the shared one), and the gateway as a real
uvicorn process pointed at it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import redis
from django.db import connection

from inference.models import Provider
from organizations.keycache import _PREFIX as KEY_CACHE_PREFIX  # the entries the outage must not stop
from organizations.tests.factories import make_api_key
from tests.live_server import GatewayProcess, free_port

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__")]


class ThrowawayRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="redis-outage-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ThrowawayRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis().start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


class _Load:
    """Clients calling chat and a data route in a loop, tallying what came back."""

    def __init__(self, url: str, key: str, clients: int = 4) -> None:
        self.url = url
        self.key = key
        self.statuses: Counter[int] = Counter()
        self.bare_errors: list[str] = []  # an error answer that is not the JSON envelope
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(index,), daemon=True) for index in range(clients)
        ]

    def _run(self, index: int) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.url, timeout=15, headers=headers) as client:
            while not self._stop.is_set():
                if index % 2:
                    reply = client.get("/v1/conversations")
                else:
                    reply = client.post(
                        "/v1/chat/completions",
                        json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
                    )
                self._tally(reply)

    def _tally(self, reply: httpx.Response) -> None:
        with self._lock:
            self.statuses[reply.status_code] += 1
            if reply.status_code >= 400:
                try:
                    envelope = reply.json()["error"]
                    assert isinstance(envelope["message"], str)
                except Exception:
                    self.bare_errors.append(f"{reply.status_code}: {reply.text[:200]}")

    def snapshot(self) -> Counter[int]:
        with self._lock:
            return Counter(self.statuses)

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=20)


def _wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_redis_stopped_mid_load(throwaway_redis: ThrowawayRedis, provider: Provider) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the gateway process shares the test database only on PostgreSQL")
    _, raw = make_api_key()
    server = GatewayProcess(
        database=True, workers=1, env={"REDIS_URL": throwaway_redis.url, "LOG_LEVEL": "WARNING"}
    )
    server.start()
    try:
        with _Load(server.url, raw) as load:
            _wait_for(lambda: load.snapshot()[200] >= 20, 30, "traffic before the outage")
            assert redis.Redis.from_url(throwaway_redis.url).keys(f"{KEY_CACHE_PREFIX}*"), (
                "the key cache uses Redis"
            )

            throwaway_redis.stop()
            during_start = load.snapshot()
            _wait_for(
                lambda: load.snapshot()[200] - during_start[200] >= 40, 60, "answers while Redis is down"
            )
            during = load.snapshot() - during_start

            throwaway_redis.start()  # same port, empty: the gateway must find it again by itself
            _wait_for(
                lambda: bool(redis.Redis.from_url(throwaway_redis.url).keys(f"{KEY_CACHE_PREFIX}*")),
                30,
                "the key cache to use Redis again",
            )
            after_start = load.snapshot()
            _wait_for(lambda: load.snapshot()[200] - after_start[200] >= 20, 30, "answers after recovery")
        assert load.bare_errors == [], load.bare_errors[:5]
        assert during[500] == 0, during
        assert during[401] == 0, during  # the key kept being recognised, from the process and the database
        assert load.statuses[500] == 0, load.statuses
    finally:
        server.stop()
