"""A fake OpenAI-compatible model server for the test suite (vLLM / llama.cpp / OpenAI stand-in).

A raw ASGI app served by uvicorn on 127.0.0.1 in a background thread: a real socket, real
chunked SSE, and real client disconnects, so tests exercise the gateway's HTTP client exactly
as production does (timeouts, connection drops, streaming back-pressure).

Endpoints
- ``GET /v1/models`` and ``GET /v1/models/{id}``: the configured model list (OpenAI shape).
- ``POST /v1/chat/completions``: non-stream and ``stream: true`` SSE ending ``data: [DONE]``;
  ``stream_options.include_usage`` adds ``"usage": null`` to every chunk and a final chunk with
  ``choices: []`` and the usage, as OpenAI does.

What a request does is scripted by the test, globally (``upstream.behaviour = "tool_calls"``) or
per model (``upstream.set_behaviour("error_500", model="broken")``). See ``BEHAVIOURS``.

Everything it received is recorded (``upstream.requests``), and so is every client that went
away before its response was complete (``upstream.disconnects`` / ``upstream.disconnected``),
which is how a test proves the gateway closed its upstream request when its own client left.

Token accounting is deterministic so tests can assert it:
- ``prompt_tokens`` = number of whitespace-separated words in the text of all messages;
- ``completion_tokens`` = number of content chunks (+ reasoning chunks for ``reasoning``, + tool-call
  chunks for ``tool_calls``); the same numbers are reported for the non-stream reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

BEHAVIOURS = frozenset(
    {
        "text",  # echo-ish reply, one content chunk per word
        "reasoning",  # reasoning_content deltas first, then content (vLLM / DeepSeek style)
        "tool_calls",  # two parallel tool calls, streamed the way OpenAI does
        "length",  # finish_reason "length"
        "error_400",  # 400 context_length_exceeded, OpenAI error body
        "error_429",  # 429 rate_limit_exceeded with Retry-After
        "error_500",  # 500 server_error, OpenAI error body
        "cut_mid_stream",  # a few chunks, then the connection is dropped (no [DONE], no final chunk)
        "slow_first_byte",  # waits `first_byte_delay` seconds before the headers, then like "text"
        "slow_stream",  # `slow_stream_chunks` content chunks, `chunk_delay` seconds apart
        "no_usage",  # like "text" but never reports usage, even when asked
    }
)

CREATED = 1_700_000_000  # models' `created`: fixed so listings compare equal across runs
REASONING = ["Let", " me", " think", " about", " it."]
# Two parallel calls. Arguments are split into fragments so the accumulation is really tested.
TOOL_CALLS: list[dict[str, Any]] = [
    {"id": "call_fake_weather", "name": "get_weather", "arguments": ['{"city"', ': "Par', 'is"}']},
    {"id": "call_fake_time", "name": "get_time", "arguments": ['{"timezone"', ': "Europe/Paris"}']},
]
CUT_AFTER_CHUNKS = 2  # cut_mid_stream: content chunks sent before the connection drops

_log = logging.getLogger("tests.fakes.upstream")


class _DropConnection(Exception):
    """Raised inside the ASGI app to make uvicorn close the socket without finishing the body.

    ASGI has no "abort" message; an exception after the response started is the one portable way
    to get a truncated chunked body (the client sees an incomplete read, not a clean end).
    """


class _HideDropConnection(logging.Filter):
    # uvicorn logs every app exception with a traceback; ours are deliberate, so keep the test
    # output clean without touching uvicorn's log level (the live gateway shares that logger).
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _DropConnection)


_filter = _HideDropConnection()
if not any(isinstance(f, _HideDropConnection) for f in logging.getLogger("uvicorn.error").filters):
    logging.getLogger("uvicorn.error").addFilter(_filter)


def wait_for(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll `predicate` until it is truthy or `timeout` seconds pass; returns its last truthiness."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value
    raw_headers: list[tuple[str, str]]
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    raw_body: bytes
    behaviour: str | None = None  # the behaviour that answered (chat completions only)
    completion_id: str | None = None  # the chatcmpl-… id the fake answered with
    received_at: float = field(default_factory=time.time)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @property
    def json(self) -> Any:
        return self.body


def _message_text(content: Any) -> str:
    """Text of a message's content: a string or a list of parts ({"type":"text","text":…})."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """Deterministic prompt token count: words across the text of every message."""
    messages = body.get("messages") or []
    return sum(len(_message_text(m.get("content")).split()) for m in messages if isinstance(m, dict))


def reply_chunks(body: Mapping[str, Any]) -> list[str]:
    """The "text" reply, one list item per content chunk: "Echo:" then each word of the last user message."""
    words: list[str] = []
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            words = _message_text(message.get("content")).split()
            break
    return ["Echo:"] + [" " + word for word in (words or ["(nothing)"])]


class _Server(uvicorn.Server):
    # uvicorn polls should_exit every 0.1 s; stop() runs after every test, so poll 10x faster.
    async def main_loop(self) -> None:
        ticks = 0
        while not self.should_exit:
            # on_tick expects 0.1 s ticks (it refreshes the Date header every 10 of them).
            if ticks % 10 == 0 and await self.on_tick(ticks // 10):
                return
            ticks += 1
            await asyncio.sleep(0.01)


def _free_socket(port: int = 0) -> socket.socket:
    # The fake binds its own socket: the port is known before the server thread runs, with no
    # race between "find a free port" and "bind it", and a restart can reuse the same port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class FakeUpstream:
    """An OpenAI-compatible model server on 127.0.0.1:<random port>, scripted by the test.

    Configuration attributes may be changed at any time from the test thread; the server thread
    reads them per request. `behaviour` (global) and `set_behaviour(..., model=...)` (per model)
    pick what a chat completion does; a per-model choice wins.
    """

    def __init__(
        self,
        models: Sequence[str] = ("fake-model",),
        *,
        behaviour: str = "text",
        first_byte_delay: float = 0.5,
        chunk_delay: float = 0.02,
        slow_stream_chunks: int = 200,
        reasoning_field: str = "reasoning_content",
        owned_by: str = "fake-upstream",
    ) -> None:
        self._lock = threading.Lock()
        self._models: list[str] = list(models)
        self._behaviour = ""
        self._behaviours: dict[str, str] = {}
        self.behaviour = behaviour
        self.owned_by = owned_by
        self.down = False  # every endpoint answers 503 (the provider is "down" but still listening)
        self.fail_models = False  # only GET /v1/models answers 500 (health check fails, chat works)
        self.reject_unknown_models = False  # chat for a model not in `models` → 404 like vLLM
        self.first_byte_delay = first_byte_delay  # seconds, slow_first_byte
        self.chunk_delay = chunk_delay  # seconds between chunks, slow_stream
        self.slow_stream_chunks = slow_stream_chunks
        # vLLM renamed reasoning_content to `reasoning` (contract §2.5); tests can pick either.
        self.reasoning_field = reasoning_field
        self.extra_response_headers: dict[str, str] = {}

        self._requests: list[RecordedRequest] = []
        self._disconnects = 0
        self._streams_started = 0
        self._streams_completed = 0
        self._open_responses = 0
        self.disconnected = threading.Event()  # set on every disconnect; clear() it to wait again
        self._ids = itertools.count(1)

        self._sock: socket.socket | None = _free_socket()
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        """Serve in a background thread; may be called again after stop() (same port)."""
        if self._thread is not None:
            return self
        if self._sock is None:
            self._sock = _free_socket(self.port)
        self._stopping.clear()
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            interface="asgi3",  # a bound method defeats uvicorn's ASGI2/3 guess
            proxy_headers=False,  # record headers exactly as the gateway sent them
            # Don't let uvicorn reconfigure logging for the whole test process.
            log_config=None,
            log_level=None,
            access_log=False,
            loop="asyncio",
            timeout_graceful_shutdown=2,
        )
        server = _Server(config)
        sock = self._sock
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="fake-upstream"
        )
        thread.start()
        if not wait_for(lambda: server.started or not thread.is_alive(), timeout=10):
            raise RuntimeError("the fake upstream did not start")
        if not server.started:
            raise RuntimeError("the fake upstream crashed while starting")
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving: connections are refused afterwards. Open streams are dropped."""
        if self._thread is None or self._server is None:
            return
        self._stopping.set()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._server = self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def url(self, path: str = "") -> str:
        """Absolute URL of `path` on this server, e.g. url("/v1/models")."""
        return self.base_url + path

    # --- configuration --------------------------------------------------------------------

    @property
    def models(self) -> list[str]:
        with self._lock:
            return list(self._models)

    @models.setter
    def models(self, value: Sequence[str]) -> None:
        with self._lock:
            self._models = list(value)

    @property
    def behaviour(self) -> str:
        """The global behaviour (default "text"), used for models with no behaviour of their own."""
        return self._behaviour

    @behaviour.setter
    def behaviour(self, value: str | Mapping[str, str]) -> None:
        # A mapping assigns per-model behaviours in one go (and resets the global one to "text").
        if isinstance(value, Mapping):
            for each in value.values():
                _check_behaviour(each)
            with self._lock:
                self._behaviours = dict(value)
                self._behaviour = "text"
            return
        _check_behaviour(value)
        self._behaviour = value

    @property
    def behaviours(self) -> dict[str, str]:
        """Per-model behaviours (a copy)."""
        with self._lock:
            return dict(self._behaviours)

    def set_behaviour(self, behaviour: str, model: str | None = None) -> None:
        """Set the behaviour for one model, or globally when `model` is None."""
        _check_behaviour(behaviour)
        if model is None:
            self._behaviour = behaviour
            return
        with self._lock:
            self._behaviours[model] = behaviour

    def behaviour_for(self, model: str) -> str:
        with self._lock:
            return self._behaviours.get(model, self._behaviour)

    # --- what happened --------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, oldest first (a snapshot)."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    @property
    def last_request(self) -> RecordedRequest:
        requests = self.requests
        if not requests:
            raise AssertionError("the fake upstream has received no request")
        return requests[-1]

    @property
    def disconnects(self) -> int:
        """Clients that went away before their response was complete (stream or not)."""
        with self._lock:
            return self._disconnects

    @property
    def streams_started(self) -> int:
        with self._lock:
            return self._streams_started

    @property
    def streams_completed(self) -> int:
        """Streams that reached `data: [DONE]`."""
        with self._lock:
            return self._streams_completed

    @property
    def open_responses(self) -> int:
        """Requests currently being answered (a gateway that leaks upstream streams keeps this > 0)."""
        with self._lock:
            return self._open_responses

    def reset(self) -> None:
        """Forget recorded requests and counters (configuration is kept)."""
        with self._lock:
            self._requests.clear()
            self._disconnects = self._streams_started = self._streams_completed = 0
        self.disconnected.clear()

    def wait_for(self, predicate: Callable[[], object], timeout: float = 5.0) -> bool:
        return wait_for(predicate, timeout)

    def wait_for_disconnect(self, count: int = 1, timeout: float = 5.0) -> bool:
        """True once at least `count` disconnects have been seen."""
        return wait_for(lambda: self.disconnects >= count, timeout)

    def wait_for_requests(self, count: int = 1, timeout: float = 5.0) -> bool:
        return wait_for(lambda: len(self.requests) >= count, timeout)

    # --- ASGI app -------------------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        raw_headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        try:
            body: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        method, path = scope["method"], scope["path"]
        behaviour = completion_id = None
        if path == "/v1/chat/completions" and isinstance(body, dict):
            behaviour = self.behaviour_for(str(body.get("model", "")))
            completion_id = f"chatcmpl-fake{next(self._ids):06d}"
        record = RecordedRequest(
            method=method,
            path=path,
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=dict(raw_headers),
            raw_headers=raw_headers,
            body=body,
            raw_body=bytes(raw),
            behaviour=behaviour,
            completion_id=completion_id,
        )
        with self._lock:
            self._requests.append(record)
            self._open_responses += 1
        # Watch for the client going away while we answer. uvicorn's send() silently drops data
        # after a disconnect, so the only reliable signal is http.disconnect from receive().
        exchange = _Exchange(receive)
        try:
            await self._route(record, exchange, send)
        finally:
            exchange.finish()
            with self._lock:
                self._open_responses -= 1

    async def _route(self, request: RecordedRequest, exchange: _Exchange, send: Send) -> None:
        if self.down:
            await self._json(send, 503, _error("The model server is down.", "server_error"), retry_after=True)
            return
        if request.path == "/v1/models" and request.method == "GET":
            if self.fail_models:
                await self._json(send, 500, _error("Listing models failed.", "server_error"))
                return
            await self._json(send, 200, {"object": "list", "data": [self._model(m) for m in self.models]})
            return
        if request.path.startswith("/v1/models/") and request.method == "GET":
            model = request.path.removeprefix("/v1/models/")
            if self.fail_models:
                await self._json(send, 500, _error("Listing models failed.", "server_error"))
            elif model in self.models:
                await self._json(send, 200, self._model(model))
            else:
                await self._json(send, 404, _not_found(model))
            return
        if request.path == "/v1/chat/completions" and request.method == "POST":
            if not isinstance(request.body, dict) or not request.body.get("messages"):
                await self._json(
                    send, 400, _error("'messages' is required.", "invalid_request_error", param="messages")
                )
                return
            model = str(request.body.get("model", ""))
            if self.reject_unknown_models and model not in self.models:
                await self._json(send, 404, _not_found(model))
                return
            await self._chat(request, exchange, send)
            return
        await self._json(
            send, 404, _error(f"No route {request.method} {request.path}.", "invalid_request_error")
        )

    def _model(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": CREATED, "owned_by": self.owned_by}

    async def _json(self, send: Send, status: int, payload: Any, *, retry_after: bool = False) -> None:
        data = orjson.dumps(payload)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        if retry_after:
            headers.append((b"retry-after", b"1"))
        headers += [(k.encode(), v.encode()) for k, v in self.extra_response_headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def _pause(self, seconds: float, exchange: _Exchange) -> None:
        """Sleep, but wake at once if the client leaves (counted) or the server stops (dropped)."""
        if seconds > 0:
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                # Short slices so stop() never waits for a long scripted delay.
                if await exchange.wait_gone(min(left, 0.05)):
                    break
                if self._stopping.is_set():
                    raise _DropConnection("server stopping")
        self._check(exchange)

    def _check(self, exchange: _Exchange) -> None:
        if exchange.gone:
            self._count_disconnect()
            raise _ClientGone
        if self._stopping.is_set():
            raise _DropConnection("server stopping")

    def _count_disconnect(self) -> None:
        with self._lock:
            self._disconnects += 1
        self.disconnected.set()

    async def _chat(self, request: RecordedRequest, exchange: _Exchange, send: Send) -> None:
        body: dict[str, Any] = request.body
        behaviour = request.behaviour or "text"
        try:
            if behaviour == "error_500":
                await self._json(send, 500, _error("The model crashed.", "server_error"))
                return
            if behaviour == "error_400":
                await self._json(
                    send,
                    400,
                    _error(
                        "This model's maximum context length is 4096 tokens. However, your messages "
                        "resulted in 5000 tokens. Please reduce the length of the messages.",
                        "invalid_request_error",
                        param="messages",
                        code="context_length_exceeded",
                    ),
                )
                return
            if behaviour == "error_429":
                await self._json(
                    send,
                    429,
                    _error("Rate limit reached.", "rate_limit_exceeded", code="rate_limit_exceeded"),
                    retry_after=True,
                )
                return
            if behaviour == "slow_first_byte":
                await self._pause(self.first_byte_delay, exchange)
            reply = _Reply.build(self, body, behaviour, str(request.completion_id))
            if body.get("stream"):
                await self._stream(reply, body, behaviour, exchange, send)
            else:
                await self._complete(reply, behaviour, send)
        except _ClientGone:
            return

    async def _complete(self, reply: _Reply, behaviour: str, send: Send) -> None:
        payload = reply.completion()
        if behaviour == "cut_mid_stream":
            # Promise the whole body, send half, drop: the client sees a truncated response.
            data = orjson.dumps(payload)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(data)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": data[: len(data) // 2], "more_body": True})
            raise _DropConnection("cut_mid_stream")
        await self._json(send, 200, payload)

    async def _stream(
        self, reply: _Reply, body: dict[str, Any], behaviour: str, exchange: _Exchange, send: Send
    ) -> None:
        include_usage = (
            bool((body.get("stream_options") or {}).get("include_usage")) and behaviour != "no_usage"
        )
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        headers += [(k.encode(), v.encode()) for k, v in self.extra_response_headers.items()]
        with self._lock:
            self._streams_started += 1
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        delay = self.chunk_delay if behaviour == "slow_stream" else 0.0
        for n, delta in enumerate(reply.deltas()):
            if behaviour == "cut_mid_stream" and n > CUT_AFTER_CHUNKS:
                raise _DropConnection("cut_mid_stream")
            if n and delay:
                await self._pause(delay, exchange)
            else:
                self._check(exchange)
            await send(_sse(reply.chunk(delta, None, include_usage)))
        if behaviour == "cut_mid_stream":
            raise _DropConnection("cut_mid_stream")
        self._check(exchange)
        await send(_sse(reply.chunk({}, reply.finish_reason, include_usage)))
        if include_usage:
            await send(_sse({**reply.envelope(), "choices": [], "usage": reply.usage()}))
        self._check(exchange)
        exchange.finish()  # from here a disconnect is an ordinary end of the exchange
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        with self._lock:
            self._streams_completed += 1


class _ClientGone(Exception):
    """The client disconnected mid-answer: stop quietly (already counted)."""


class _Exchange:
    """Tracks whether the client of one request has gone away."""

    def __init__(self, receive: Receive) -> None:
        self._gone = asyncio.Event()
        self._finished = False
        self._task = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # uvicorn also reports http.disconnect once the response is complete; only a
                # disconnect before that is a client going away.
                if not self._finished:
                    self._gone.set()
                return

    @property
    def gone(self) -> bool:
        return self._gone.is_set()

    async def wait_gone(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._gone.wait(), seconds)
        return self._gone.is_set()

    def finish(self) -> None:
        self._finished = True
        if not self._task.done():
            self._task.cancel()


@dataclass
class _Reply:
    """One scripted answer, rendered either as a chat.completion or as chunk deltas."""

    id: str
    model: str
    created: int
    prompt_tokens: int
    content: list[str]
    reasoning: list[str]
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    reasoning_field: str
    report_usage: bool

    @classmethod
    def build(
        cls, upstream: FakeUpstream, body: dict[str, Any], behaviour: str, completion_id: str
    ) -> _Reply:
        content = reply_chunks(body)
        reasoning: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        finish = "stop"
        if behaviour == "reasoning":
            reasoning = list(REASONING)
        elif behaviour == "tool_calls":
            content, tool_calls, finish = [], TOOL_CALLS, "tool_calls"
        elif behaviour == "length":
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
            content = content[: int(limit)] if isinstance(limit, int) and limit > 0 else content[:3]
            finish = "length"
        elif behaviour == "slow_stream":
            content = [f" word{i}" for i in range(upstream.slow_stream_chunks)]
        return cls(
            id=completion_id,
            model=str(body.get("model", "")),
            created=int(time.time()),
            prompt_tokens=prompt_tokens(body),
            content=content,
            reasoning=reasoning,
            tool_calls=tool_calls,
            finish_reason=finish,
            reasoning_field=upstream.reasoning_field,
            report_usage=behaviour != "no_usage",
        )

    def envelope(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }

    def _tool_fragments(self) -> Iterator[dict[str, Any]]:
        # OpenAI's order: per call, a first delta with index, id, type, name and empty arguments,
        # then deltas with only the index and an argument fragment. id/type/name never repeat,
        # because SDK accumulators concatenate every string they see again (contract §2.3).
        for index, call in enumerate(self.tool_calls):
            yield {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            for fragment in call["arguments"]:
                yield {"index": index, "function": {"arguments": fragment}}

    def deltas(self) -> Iterator[dict[str, Any]]:
        """Chunk deltas before the finishing one; the role is sent in the first only."""
        if self.tool_calls:
            yield {"role": "assistant", "content": None, "refusal": None}
            for fragment in self._tool_fragments():
                yield {"tool_calls": [fragment]}
            return
        yield {"role": "assistant", "content": ""}
        for piece in self.reasoning:
            yield {self.reasoning_field: piece}
        for piece in self.content:
            yield {"content": piece}

    def completion_tokens(self) -> int:
        return len(self.content) + len(self.reasoning) + sum(1 for _ in self._tool_fragments())

    def usage(self) -> dict[str, Any]:
        completion = self.completion_tokens()
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }
        if self.reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": len(self.reasoning)}
        return usage

    def chunk(self, delta: dict[str, Any], finish: str | None, include_usage: bool) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            **self.envelope(),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if include_usage:
            chunk["usage"] = None  # OpenAI: every chunk carries usage: null when usage was asked for
        return chunk

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.content) if not self.tool_calls else None,
            "refusal": None,
        }
        if self.reasoning:
            message[self.reasoning_field] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": "".join(call["arguments"])},
                }
                for call in self.tool_calls
            ]
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": self.finish_reason, "logprobs": None}
            ],
        }
        if self.report_usage:
            payload["usage"] = self.usage()
        return payload


def _sse(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "http.response.body",
        "body": b"data: " + orjson.dumps(payload) + b"\n\n",
        "more_body": True,
    }


def _error(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _not_found(model: str) -> dict[str, Any]:
    return _error(
        f"The model `{model}` does not exist.", "invalid_request_error", param="model", code="model_not_found"
    )


def _check_behaviour(behaviour: str) -> None:
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown fake upstream behaviour {behaviour!r}; one of {sorted(BEHAVIOURS)}")
