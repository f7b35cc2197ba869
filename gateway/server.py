"""The web server: `python -m gateway.server` (what `make run`, the Procfile and the image start).

uvicorn serves `gateway.asgi:application` with the settings of gateway/settings.py (HOST, PORT,
WEB_CONCURRENCY, SERVER_*, SHUTDOWN_DRAIN_SECONDS). What uvicorn offers natively is used as is:
the keep-alive timeout, the concurrency limit (connections plus running requests per worker)
and the graceful shutdown period. What it lacks for a server exposed to anyone is added here,
in a thin subclass of its httptools protocol:

- a header-read timeout: uvicorn arms no timer on a new connection, and its keep-alive timer is
  reset by every byte, so a client sending one header byte every few seconds (slowloris) held a
  connection forever. Here the whole request head must arrive within SERVER_HEADER_TIMEOUT_SECONDS
  of its first byte (or of the connection's opening), whatever trickles in.
- a body-read timeout: once the head is in, the rest of the body must arrive within
  SERVER_BODY_TIMEOUT_SECONDS, or the request is answered 408 (and the app sees a disconnect);
  without it a client trickling its body held a connection and a running request indefinitely.
  The timer is armed only when a body is still incomplete after a read, so the usual request,
  whose body comes with its head, costs nothing.
- a limit on the head's size and on the number of headers: httptools buffers a header value of
  any length and accepts any number of headers; here 431 answers past SERVER_MAX_HEADER_BYTES
  or SERVER_MAX_HEADERS.
- the over-capacity answer is OpenAI's error envelope (uvicorn's is plain text).

Why uvicorn still: the hot path's figures were measured on it (httptools + uvloop), and what it
lacks is this small protocol subclass. Its h11 protocol only caps an incomplete head (16 kB,
answered 400, not 431), which is why the subclass is of the httptools one.

Shutdown (SIGTERM or SIGINT): the listening socket is closed at once, idle connections are
closed, running requests and streams get SHUTDOWN_DRAIN_SECONDS to finish; a stream still running
then is cancelled, which ends it with an error event and records its usage (gateway.asgi), and
the application's lifespan shutdown flushes the usage buffer.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

import httptools
import orjson
import uvicorn
from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors.multiprocess import Multiprocess

APPLICATION = "gateway.asgi:application"
# How long a refused connection's remaining input is read and dropped before closing.
LINGER_SECONDS = 2.0


def _envelope(status: int, message: str, code: str, error_type: str = "invalid_request_error") -> bytes:
    """A complete HTTP/1.1 answer that closes the connection, written before any app runs."""
    from http import HTTPStatus

    body = orjson.dumps({"error": {"message": message, "type": error_type, "param": None, "code": code}})
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


HEADERS_TOO_LARGE = _envelope(
    431, "The request headers are too large or too many.", "request_header_fields_too_large"
)
HEADER_TIMEOUT = _envelope(408, "The request headers were not received in time.", "request_timeout")
BODY_TIMEOUT = _envelope(408, "The request body was not received in time.", "request_timeout")


class _Rejected(Exception):
    """Raised from a parser callback to stop parsing; the answer is already chosen."""


async def _over_capacity(scope: Any, receive: Any, send: Any) -> None:
    body = orjson.dumps(
        {
            "error": {
                "message": "The server is at its connection limit; retry shortly.",
                "type": "server_error",
                "param": None,
                "code": "service_unavailable",
            }
        }
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _HeadCoalescingTransport:
    """The connection's transport as one response sees it: the response head is held until the
    body's first bytes, and both go out in one write.

    uvicorn writes the head on `http.response.start` and the body on `http.response.body`: two
    writes, two segments and two wake-ups of the client per answer. On loopback the head's write
    alone was 9 % of a worker's CPU per proxied request (py-spy). A held head is written, alone, at
    the event loop's next turn at the latest, so a stream's head is not delayed behind its first
    token; `close()` writes it first.
    """

    __slots__ = ("_flush_handle", "_head", "_head_seen", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._flush_handle.cancel()  # type: ignore[union-attr]
            self._transport.write(head + data)
        elif not self._head_seen and not self._transport.is_closing():
            self._head_seen = True
            self._head = bytes(data)
            self._flush_handle = self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body read timeouts and head size/count limits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout: float = settings.SERVER_HEADER_TIMEOUT_SECONDS
        self.max_head_bytes: int = settings.SERVER_MAX_HEADER_BYTES
        self.max_headers: int = settings.SERVER_MAX_HEADERS
        # The concurrency check is done here (same rule as uvicorn's) to answer with the envelope.
        self.max_concurrency: int | None = self.limit_concurrency
        self.limit_concurrency = None
        self.header_timer: asyncio.TimerHandle | None = None
        self.body_timeout: float = settings.SERVER_BODY_TIMEOUT_SECONDS
        self.body_timer: asyncio.TimerHandle | None = None
        self.head_completed_at = 0.0  # loop time the current request's head was complete
        self.head_received: int | None = 0  # bytes of the current request head; None once complete
        self.head_counted = 0  # request line and headers as parsed, the exact figure
        self.header_count = 0

    # --- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        self._disarm_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        if self.head_received is not None:
            self.head_received += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if isinstance(self._rejection, bytes):
                self._reject(self._rejection)
                return
            raise
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # Still inside a head after this chunk: the bytes so far bound it (the chunk's size at most
        # past the limit is ever buffered).
        if self.head_received is not None and self.head_received > self.max_head_bytes:
            self._reject(HEADERS_TOO_LARGE)
        elif self.head_received is None and self.body_timer is None and self.cycle.more_body:
            # A head in, its body not complete after this read: the body's deadline runs from
            # the head's completion.
            self.body_timer = self.loop.call_at(
                self.head_completed_at + self.body_timeout, self._body_timed_out
            )

    _rejection: bytes | None = None
    discarding = False

    def _reject(self, answer: bytes) -> None:
        """Answer and close without making the client lose the answer.

        Closing a socket with unread input makes the kernel send a reset, and a client still
        sending its oversized head would get ECONNRESET instead of our 431. So, as nginx's
        lingering close: send the answer, end our side, read and drop what still comes for a
        short while, then close.
        """
        self._disarm_header_timer()
        self._disarm_body_timer()
        if self.transport.is_closing():
            return
        self.transport.write(answer)
        self.discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    # --- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_counted = 0
        self.header_count = 0
        if self.head_received is None:
            self.head_received = 0
        if self.header_timer is None:
            self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > self.max_headers:
            self._rejection = HEADERS_TOO_LARGE
            raise _Rejected
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self.head_counted += size
        if self.head_counted > self.max_head_bytes:
            self._rejection = HEADERS_TOO_LARGE
            raise _Rejected

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        self.head_received = None
        self.head_completed_at = self.loop.time()
        limit = self.max_concurrency
        if limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit):
            # uvicorn reads self.app for this request only, synchronously, inside the call.
            app, self.app = self.app, _over_capacity
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()
        self.cycle.transport = _HeadCoalescingTransport(self.transport, self.loop)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm_body_timer()
        self.head_received = 0  # what follows (pipelined or after keep-alive) is the next head

    # --- the header timer ------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self.header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _header_timed_out(self) -> None:
        self.header_timer = None
        if self.transport.is_closing():
            return
        if self.head_received:  # part of a head came: say why the connection ends
            self._reject(HEADER_TIMEOUT)
        else:
            self.transport.close()

    # --- the body timer --------------------------------------------------------------------

    def _disarm_body_timer(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def _body_timed_out(self) -> None:
        self.body_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle.response_started:
            # The app answered before reading the whole body (a refusal, say); what still
            # trickles in has no reader, so the connection just ends.
            self.transport.close()
            return
        # The app waits in receive(): it gets http.disconnect, and whatever it sends after is
        # dropped (uvicorn ignores sends on a disconnected cycle), so the 408 is the only answer.
        cycle.disconnected = True
        cycle.message_event.set()
        self._reject(BODY_TIMEOUT)


class DrainingMultiprocess(Multiprocess):
    """uvicorn's worker supervisor, closing the listening socket before the workers drain.

    uvicorn's parent keeps its copy of the socket open until every worker has exited, so during
    the drain the kernel went on accepting connections that nobody would ever serve.
    """

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def build_config() -> uvicorn.Config:
    return uvicorn.Config(
        APPLICATION,
        host=settings.HOST,
        port=settings.PORT,
        workers=settings.WEB_CONCURRENCY,
        http="gateway.server:GuardedHttpToolsProtocol",
        loop="uvloop",
        lifespan="on",
        access_log=False,  # the application logs one JSON line per request itself
        # X-Forwarded-For is believed only from TRUSTED_PROXIES (gateway.client_address); uvicorn's
        # own rewrite would already trust any caller on 127.0.0.1 before that rule runs.
        proxy_headers=False,
        limit_concurrency=settings.SERVER_MAX_CONCURRENCY,
        timeout_keep_alive=settings.SERVER_KEEPALIVE_SECONDS,
        timeout_graceful_shutdown=settings.SHUTDOWN_DRAIN_SECONDS,
    )


def run_daphne() -> int:
    """daphne instead of uvicorn (SERVER=daphne): one process on Twisted, for deployments that
    standardise on it. It has no ASGI lifespan (the router starts its mounts on the first request,
    and the usage rows still buffered at shutdown are lost), no worker processes (run more
    replicas instead of WEB_CONCURRENCY) and none of the guards of GuardedHttpToolsProtocol above;
    the README's "The web server" has the figures against uvicorn."""
    from daphne.cli import CommandLineInterface

    # Verbosity 0: warnings only and no access log; the application logs each request itself.
    CommandLineInterface().run(
        ["--bind", settings.HOST, "--port", str(settings.PORT), "--verbosity", "0", APPLICATION]
    )
    return 0


def main() -> int:
    if settings.SERVER == "daphne":
        return run_daphne()
    config = build_config()
    server = uvicorn.Server(config)
    if config.workers > 1:
        DrainingMultiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    config.load_app()
    server.run(sockets=[reuse_port_socket(config)] if settings.SERVER_REUSE_PORT else None)
    return 0 if server.started else 3  # 3: uvicorn's "failed to start" status


def reuse_port_socket(config: uvicorn.Config) -> socket.socket:
    """The listening socket, bound with SO_REUSEPORT beside the other web processes': the kernel
    spreads new connections over them, as over uvicorn's workers behind one socket."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((config.host, config.port))
    sock.listen(config.backlog)
    sock.set_inheritable(True)
    return sock


if __name__ == "__main__":
    sys.exit(main())
