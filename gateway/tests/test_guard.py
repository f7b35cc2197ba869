"""The outermost ASGI layer (gateway.asgi.Guard) and the DRF JSON parser, through real HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from django.test import Client

from gateway.asgi import Guard
from organizations.tests.factories import make_api_key
from tests.live_server import LiveGateway, free_port


def _read_answer(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes, or until a full JSON answer has arrived."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            part = sock.recv(65536)
        except TimeoutError:
            break
        if not part:
            break
        data += part
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            None,
        )
        if length is not None and len(body) >= length:
            break
    return data


def _status_and_body(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), orjson.loads(body)


# --- Body limits ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "setting"),
    [("/v1/conversations", "DATA_UPLOAD_MAX_MEMORY_SIZE"), ("/v1/responses", "CHAT_MAX_BODY_BYTES")],
)
def test_an_oversized_chunked_body_is_413_before_the_401_and_before_it_ends(
    live_gateway: LiveGateway, settings: Any, path: str, setting: str
) -> None:
    setattr(settings, setting, 10_000)
    with socket.create_connection(("127.0.0.1", live_gateway.port)) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b'{"x": "' + b"a" * 6000
        for _ in range(2):  # 12,000 bytes: past the limit, and the body never ends
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        status, body = _status_and_body(_read_answer(sock))
    assert status == 413  # no Authorization header at all: the limit answers first
    assert body["error"]["code"] == "request_too_large"
    assert body["error"]["type"] == "invalid_request_error"


@pytest.mark.django_db(transaction=True)
def test_a_declared_oversized_body_is_refused_before_a_byte_of_it_is_read(
    live_gateway: LiveGateway, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    with socket.create_connection(("127.0.0.1", live_gateway.port)) as sock:
        sock.sendall(
            b"POST /v1/organization/projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Request-ID: limit-test-1\r\nContent-Length: 209715200\r\n\r\n"
        )
        answer = _read_answer(sock)
    status, body = _status_and_body(answer)
    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    assert b"x-request-id: limit-test-1" in answer.lower()


@pytest.mark.django_db(transaction=True)
def test_a_body_within_the_limit_still_reaches_the_route(live_gateway: LiveGateway, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    _, raw = make_api_key()
    answer = httpx.post(
        f"{live_gateway.url}/v1/conversations",
        json={"items": [{"role": "user", "content": "x" * 9000}]},
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert answer.status_code == 200, answer.text
    items = httpx.get(
        f"{live_gateway.url}/v1/conversations/{answer.json()['id']}/items",
        headers={"Authorization": f"Bearer {raw}"},
    ).json()["data"]
    assert items[0]["content"][0]["text"] == "x" * 9000


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_reaches_a_drf_view_whole(live_gateway: LiveGateway) -> None:
    _, raw = make_api_key()

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        yield b'{"items": [{"role": "user", "content": "'
        yield b"y" * 5000
        yield b'"}], "metadata": {"via": "chunks"}}'

    answer = httpx.post(
        f"{live_gateway.url}/v1/conversations",
        content=chunks(),
        headers={"Authorization": f"Bearer {raw}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["metadata"] == {"via": "chunks"}
    items = httpx.get(
        f"{live_gateway.url}/v1/conversations/{answer.json()['id']}/items",
        headers={"Authorization": f"Bearer {raw}"},
    ).json()["data"]
    assert items[0]["content"][0]["text"] == "y" * 5000


# --- Deeply nested JSON ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "key_type"), [("/v1/conversations", "project"), ("/v1/organization/projects", "admin")]
)
def test_100000_deep_json_is_a_400_not_a_recursion_error(path: str, key_type: str) -> None:
    _, raw = make_api_key(key_type=key_type)
    for deep in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        answer = Client().post(
            path, data=deep, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "invalid_json"


@pytest.mark.django_db
def test_ordinary_json_still_parses_through_the_bounded_parser() -> None:
    _, raw = make_api_key(key_type="admin")
    answer = Client().post(
        "/v1/organization/projects",
        data=orjson.dumps({"name": "nested ok"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert answer.status_code in (200, 201), answer.content
    assert answer.json()["name"] == "nested ok"


# --- The last resort ------------------------------------------------------------------------


class _Served:
    """An ASGI app behind Guard, under a real uvicorn in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            Guard(app), host="127.0.0.1", port=self.port, log_level="critical", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


async def _raises_before_answering(scope: Any, receive: Any, send: Any) -> None:
    raise ConnectionError("redis is down")  # what a Redis outage used to turn into a plain 500


async def _raises_mid_stream(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
    )
    await send({"type": "http.response.body", "body": b'data: {"n": 1}\n\n', "more_body": True})
    await asyncio.sleep(0)
    raise RuntimeError("the database went away mid-stream")


def test_an_escaped_exception_becomes_the_500_envelope_with_the_request_id() -> None:
    with _Served(_raises_before_answering) as url:
        answer = httpx.get(f"{url}/v1/anything", headers={"X-Request-ID": "req-last-resort"})
        anonymous = httpx.get(f"{url}/v1/anything")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-request-id"] == "req-last-resort"
    assert answer.json() == {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
    assert anonymous.status_code == 500
    assert anonymous.headers["x-request-id"]  # made up when the client sent none


def test_an_exception_mid_stream_ends_the_stream_with_an_error_event() -> None:
    with _Served(_raises_mid_stream) as url, httpx.stream("GET", f"{url}/v1/stream") as answer:
        text = b"".join(answer.iter_bytes()).decode()
    assert answer.status_code == 200
    events = [line.removeprefix("data: ") for line in text.split("\n\n") if line]
    assert orjson.loads(events[0]) == {"n": 1}
    assert orjson.loads(events[-1])["error"]["code"] == "internal_error"


def test_a_json_rpc_stream_cut_mid_stream_just_ends() -> None:
    """MCP streams carry JSON-RPC: an OpenAI error event would be an invalid message to them."""
    with _Served(_raises_mid_stream) as url, httpx.stream("GET", f"{url}/v1/mcp") as answer:
        text = b"".join(answer.iter_bytes()).decode()
    assert answer.status_code == 200
    assert text == 'data: {"n": 1}\n\n'


async def _streams_until_cancelled(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
    )
    await send({"type": "http.response.body", "body": b'data: {"n": 1}\n\n', "more_body": True})
    await asyncio.sleep(3600)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/mcp"])
def test_a_stream_the_shutdown_drain_cuts_ends_as_its_protocol_expects(path: str) -> None:
    served = _Served(_streams_until_cancelled)
    served.server.config.timeout_graceful_shutdown = 1
    with served as url, httpx.stream("GET", f"{url}{path}", timeout=10) as answer:
        chunks = answer.iter_bytes()
        first = next(chunks)
        served.server.should_exit = True  # the drain runs out after 1 s and cancels the stream
        text = (first + b"".join(chunks)).decode()
    events = [line.removeprefix("data: ") for line in text.split("\n\n") if line]
    assert orjson.loads(events[0]) == {"n": 1}
    if path == "/v1/mcp":
        assert len(events) == 1
    else:
        assert orjson.loads(events[-1])["error"]["code"] == "server_shutting_down"
