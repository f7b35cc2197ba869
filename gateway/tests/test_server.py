"""`python -m gateway.server` as a real process: the connection limits an exposed server needs."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import orjson
import pytest

from tests.live_server import GatewayProcess

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def server() -> Iterator[GatewayProcess]:
    # No database: /healthcheck needs none, so this runs on the embedded default too.
    process = GatewayProcess(
        "gateway.server",
        env={
            "WEB_CONCURRENCY": "1",
            "SERVER_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
            "SERVER_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
            "SERVER_MAX_HEADERS": "50",
            "SERVER_MAX_HEADER_BYTES": "8192",
            "SERVER_MAX_CONCURRENCY": "20",
        },
    ).start()
    yield process
    process.stop()


def _connect(server: GatewayProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _trickle(sock: socket.socket, piece: Callable[[int], bytes]) -> bytes:
    """Send piece(0), piece(1), ... every 0.3 s until the server answers or closes; the answer."""
    sock.settimeout(0.3)
    answer = b""
    for index in range(40):
        try:
            sock.sendall(piece(index))
            answer += sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if answer:
            break
    sock.settimeout(5)
    return answer + _answer(sock)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _error(answer: bytes) -> dict[str, object]:
    error: dict[str, object] = orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    return error


def test_a_slowloris_client_is_cut_off_by_the_header_timeout(server: GatewayProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        # One header line every 0.3 s, each one resetting uvicorn's own keep-alive timer.
        answer = _trickle(sock, lambda index: f"X-Trickle-{index}: a\r\n".encode())
        elapsed = time.monotonic() - started
    assert _status(answer) == 408
    assert _error(answer)["code"] == "request_timeout"
    assert HEADER_TIMEOUT - 0.2 < elapsed < HEADER_TIMEOUT + 2


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(server: GatewayProcess) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        assert _answer(sock) == b""  # closed without a word: the client never asked anything
        assert time.monotonic() - started < HEADER_TIMEOUT + 2


def _post_head(length: int) -> bytes:
    # A Django route: the handler reads the whole body before anything else (authentication too).
    return (
        b"POST /v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(length).encode() + b"\r\n\r\n"
    )


def test_a_client_trickling_its_body_gets_408_after_the_body_timeout(server: GatewayProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(_post_head(1000) + b'{"metadata"')
        started = time.monotonic()
        # One body byte every 0.3 s: well past the header timeout, every byte a sign of life.
        answer = _trickle(sock, lambda _: b" ")
        elapsed = time.monotonic() - started
    assert _status(answer) == 408, answer
    assert _error(answer)["code"] == "request_timeout"
    assert "body" in str(_error(answer)["message"])
    assert answer.count(b"HTTP/1.1") == 1  # the app, told of a disconnect, answered nothing more
    assert BODY_TIMEOUT - 0.2 < elapsed < BODY_TIMEOUT + 2


def test_a_body_in_pieces_within_the_timeout_is_served(server: GatewayProcess) -> None:
    body = b'{"metadata": {}}'
    with _connect(server) as sock:
        sock.sendall(_post_head(len(body)) + body[:5])
        time.sleep(0.5)
        sock.sendall(body[5:10])
        time.sleep(0.5)
        sock.sendall(body[10:])
        sock.settimeout(10)
        answer = sock.recv(65536)
    # The whole body was read and the request ran: it is refused for want of a key, not cut.
    assert _status(answer) == 401, answer


@pytest.mark.parametrize(
    "head",
    [
        b"".join(f"X-Many-{index}: a\r\n".encode() for index in range(60)),  # 60 headers > 50
        b"X-Huge: " + b"a" * 20_000 + b"\r\n",  # one header of 20 kB > 8 kB
        b"X-Endless: " + b"a" * 1_000_000,  # 1 MB that never ends its line
    ],
    ids=["too-many", "too-large", "never-ending"],
)
def test_oversized_heads_get_431_in_the_envelope(server: GatewayProcess, head: bytes) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n\r\n")
        answer = _answer(sock)
    assert _status(answer) == 431
    assert _error(answer)["code"] == "request_header_fields_too_large"


def test_an_ordinary_request_with_many_small_headers_passes(server: GatewayProcess) -> None:
    with _connect(server) as sock:
        headers = b"".join(f"X-Ok-{index}: a\r\n".encode() for index in range(40))
        sock.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + b"\r\n")
        assert _status(_answer(sock)) == 200


def test_past_the_concurrency_limit_new_requests_get_503_in_the_envelope(server: GatewayProcess) -> None:
    idle = [_connect(server) for _ in range(20)]
    try:
        # The server accepts the idle ones in its own time: ask until it counts them all.
        deadline = time.monotonic() + 5
        while True:
            with _connect(server) as sock:
                sock.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = _answer(sock)
            if _status(answer) == 503 or time.monotonic() > deadline:
                break
        assert _status(answer) == 503
        assert _error(answer)["code"] == "service_unavailable"
        assert b"retry-after: 1" in answer.lower()
    finally:
        for sock in idle:
            sock.close()
    # The limit counts what is open now: once they are gone, requests are served again.
    deadline = time.monotonic() + 5
    while True:
        with _connect(server) as sock:
            sock.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if _status(_answer(sock)) == 200:
                break
        assert time.monotonic() < deadline
