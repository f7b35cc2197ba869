"""/readyz answers within a second, 503 naming the part, while PostgreSQL or Redis hangs or is
down; with read replicas it lists each one and its lag (test_replica_http stops a real one)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.live_server import GatewayProcess, LiveGateway, free_port

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__")]


class Blackhole:
    """Accepts TCP connections and never answers: a server that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


def _timed_readyz(url: str) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    reply = httpx.get(f"{url}/readyz", timeout=10)
    return time.monotonic() - started, reply


@pytest.mark.parametrize("failure", ["hangs", "refuses"])
def test_database_down(blackhole: Blackhole, failure: str) -> None:
    port = blackhole.port if failure == "hangs" else free_port()
    server = GatewayProcess(
        database=True, workers=1, env={"DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/gateway"}
    )
    server.start()
    try:
        for _ in range(3):
            elapsed, reply = _timed_readyz(server.url)
            assert reply.status_code == 503, reply.text
            assert reply.json()["error"]["param"] == "database"
            assert elapsed < 1.0, elapsed
    finally:
        server.stop()


def test_redis_hangs(blackhole: Blackhole) -> None:
    server = GatewayProcess(
        database=True, workers=1, env={"REDIS_URL": f"redis://127.0.0.1:{blackhole.port}/0"}
    )
    server.start()
    try:
        elapsed, reply = _timed_readyz(server.url)
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"]["param"] == "redis"
        assert elapsed < 1.0, elapsed
    finally:
        server.stop()


def test_ready_lists_replicas(live_gateway: LiveGateway, settings) -> None:  # type: ignore[no-untyped-def]
    reply = httpx.get(f"{live_gateway.url}/readyz", timeout=10)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body["replicas"]) == set(settings.DATABASE_REPLICAS)
    for alias, replica in body["replicas"].items():
        assert replica["status"] in {"ok", "lagging"}, replica
        assert isinstance(replica["lag_seconds"], float)
        assert body["checks"][alias] == replica["status"]
