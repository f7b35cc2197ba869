"""Load generators for the benchmark, all on 127.0.0.1.

- closed loop (`closed_loop`, `run_wrk`): C connections, each sending its next request as soon as
  the last one ended: the throughput a target sustains at that concurrency.
- open loop (`open_loop`): requests scheduled at a fixed arrival rate, whatever the target does,
  each one's latency counted from its scheduled send time. A slow answer does not delay the
  next request (as it does in a closed loop, where the stall is never measured: "coordinated
  omission"), so the percentiles are what clients arriving at that rate would see.

The Python clients speak minimal HTTP/1.1 on raw asyncio streams: httpx costs several times more
CPU per request, and the client shares the two cores with the servers being measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.procs import ProcTree

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
# What a failed request is counted as (a socket error, a truncated or malformed answer).
CLIENT_ERRORS = (
    OSError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
)


@dataclass
class Target:
    name: str
    url: str  # server root
    tree: ProcTree
    key: str = ""  # sent as `Authorization: Bearer <key>`
    headers: dict[str, str] = field(default_factory=dict)  # more request headers (Portkey's routing)
    note: str = ""  # what this target is, for the report

    @property
    def chat_url(self) -> str:
        return self.url.rstrip("/") + CHAT_PATH

    def url_for(self, body: dict[str, Any]) -> str:
        """The endpoint a benchmark body goes to: embeddings bodies have `input`."""
        return self.url.rstrip("/") + EMBEDDINGS_PATH if "input" in body else self.chat_url


@dataclass
class Sample:
    """What one load run saw."""

    ok: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, whole response
    ttfts: list[float] = field(default_factory=list)  # seconds, streams only
    errors: Counter[str] = field(default_factory=Counter)
    client: str = "python"
    # wrk reports percentiles itself; the Python client's come from `latencies`.
    p50_ms: float | None = None
    p99_ms: float | None = None
    # Open loop only: requests scheduled, those that found every connection busy, the deepest queue,
    # those neither answered nor failed by the end of the grace period, the generator's own
    # worst delay behind schedule (seconds).
    sent: int = 0
    late: int = 0
    max_backlog: int = 0
    unfinished: int = 0
    scheduled_s: float = 0.0
    max_lag: float = 0.0
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (due - start, latency) s
    warmup_done: int = 0  # warm-up requests answered or failed: their CPU is in the measurement


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def request_bytes(
    url: str, key: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit(f"only http:// targets are supported, not {url}")
    port = parts.port or 80
    payload = orjson.dumps(body)
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.hostname}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\nAccept: application/json\r\n"
        f"User-Agent: jan-gateway-bench\r\n{extra}Content-Length: {len(payload)}\r\n\r\n"
    )
    return parts.hostname, port, head.encode() + payload


class BadResponse(Exception):
    pass


async def read_response(reader: asyncio.StreamReader, on_data: Any) -> tuple[int, bool]:
    """Read one HTTP/1.1 response, passing body bytes to `on_data`; returns (status, keep-alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length: int | None = None
    chunked = False
    keep_alive = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            keep_alive = False
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                break
            on_data((await reader.readexactly(size + 2))[:-2])
    elif length is not None:
        on_data(await reader.readexactly(length))
    else:
        on_data(await reader.read())
        keep_alive = False
    return status, keep_alive


class StreamCheck:
    """Validates one SSE chat stream as it arrives and notes the time of the first token."""

    __slots__ = ("buffer", "content_chunks", "done", "first_token", "started", "usage")

    def __init__(self, started: float) -> None:
        self.started = started
        self.buffer = b""
        self.first_token: float | None = None
        self.content_chunks = 0
        self.usage = False
        self.done = False

    def feed(self, data: bytes) -> None:
        self.buffer += data.replace(b"\r\n", b"\n")
        *events, self.buffer = self.buffer.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    self.done = True
                    continue
                chunk = orjson.loads(payload)
                if chunk.get("error"):
                    raise BadResponse("error event")
                if chunk.get("usage"):
                    self.usage = True
                for choice in chunk.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        self.content_chunks += 1
                        if self.first_token is None:
                            self.first_token = time.perf_counter()


def _has_answer(answer: dict[str, Any]) -> bool:
    """A chat completion with content, or embeddings with a vector."""
    if "choices" in answer:
        return bool(answer["choices"][0]["message"]["content"])
    return bool(answer["data"][0]["embedding"])


class Connection:
    """One keep-alive HTTP/1.1 connection that sends prepared requests and checks the answers."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, raw: bytes, stream: bool, sample: Sample, since: float) -> None:
        """Send `raw`, read and check the answer, and record it in `sample`.

        Latency and time to first token are counted from `since`: the send time in a closed
        loop, the scheduled send time in an open one.
        """
        try:
            await self.open()
            assert self.reader is not None
            assert self.writer is not None
            self.writer.write(raw)
            if stream:
                check = StreamCheck(since)
                status, keep_alive = await read_response(self.reader, check.feed)
                ended = time.perf_counter()
                if status != 200:
                    sample.errors[f"http {status}"] += 1
                elif not check.done:
                    sample.errors["no [DONE]"] += 1
                elif check.first_token is None:
                    sample.errors["no content"] += 1
                elif not check.usage:
                    sample.errors["no usage chunk"] += 1
                else:
                    sample.ok += 1
                    sample.latencies.append(ended - since)
                    sample.ttfts.append(check.first_token - since)
            else:
                parts: list[bytes] = []
                status, keep_alive = await read_response(self.reader, parts.append)
                ended = time.perf_counter()
                if status != 200:
                    sample.errors[f"http {status}"] += 1
                elif not _has_answer(orjson.loads(b"".join(parts))):
                    sample.errors["empty content"] += 1
                else:
                    sample.ok += 1
                    sample.latencies.append(ended - since)
            if not keep_alive:
                self.close()
        except (*CLIENT_ERRORS, BadResponse) as error:
            sample.errors[type(error).__name__] += 1
            self.close()
            await asyncio.sleep(0.01)  # don't spin on a refused connection


async def closed_loop(target: Target, body: dict[str, Any], concurrency: int, duration: float) -> Sample:
    """`concurrency` connections, each sending its next request as soon as the last one ends."""
    host, port, raw = request_bytes(target.url_for(body), target.key, body, target.headers)
    stream = bool(body.get("stream"))
    sample = Sample()
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        connection = Connection(host, port)
        while time.perf_counter() < stop_at:
            await connection.exchange(raw, stream, sample, time.perf_counter())
        connection.close()

    began = time.perf_counter()
    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    # A hung server must not hang the benchmark: give stragglers 30 s past the end.
    _, pending = await asyncio.wait(tasks, timeout=duration + 30)
    for task in pending:
        task.cancel()
        sample.errors["timeout"] += 1
    sample.elapsed = time.perf_counter() - began
    return sample


async def open_loop(
    target: Target,
    bodies: list[dict[str, Any]],
    rate: float,
    duration: float,
    connections: int = 64,
    grace: float | None = None,
    warmup: float = 0.0,
) -> Sample:
    """Requests at `rate` per second for `duration`, over at most `connections` connections.

    The first `warmup` seconds of the same schedule go first and are not recorded (as wrk2's
    calibration): the target's first requests on fresh connections are not its steady state.

    Request i is due at start + i / rate. A dispatcher queues each one at its due time; idle
    connections take them in order. When all connections are busy the request waits in the
    queue, and that wait is part of its latency, which always runs from the due time. So a
    target that falls behind shows it in the percentiles (and in `late`), instead of slowing
    the generator down as a closed loop would. `bodies` are sent in turn (a mix for the soak).

    Requests still queued or running `grace` seconds after the last one was due are counted as
    `unfinished`, with their latency so far: a lower bound that keeps the percentiles honest.
    """
    prepared = []
    for body in bodies:
        host, port, raw = request_bytes(target.url_for(body), target.key, body, target.headers)
        prepared.append((raw, bool(body.get("stream"))))
    sample = Sample(client="paced")
    scratch = Sample(client="paced")  # what the warm-up requests saw: not reported
    interval = 1.0 / rate
    total = max(1, round(rate * duration))
    warm = round(rate * warmup)
    queue: asyncio.Queue[tuple[float, int] | None] = asyncio.Queue()
    running: dict[int, float] = {}  # worker -> due time of the request it is serving

    pool = [Connection(host, port) for _ in range(connections)]
    # Connected before the first request is due, so connection set-up is not in the latencies.
    await asyncio.gather(*(connection.open() for connection in pool), return_exceptions=True)
    warm_from = time.perf_counter() + 0.01
    began = warm_from + warm * interval  # the first recorded request is due then

    idle = 0  # connections waiting for a request

    async def dispatch() -> None:
        for index in range(warm + total):
            due = warm_from + index * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if index >= warm:
                # How late the generator itself is: it must stay far below the latencies measured.
                sample.max_lag = max(sample.max_lag, time.perf_counter() - due)
                if idle <= queue.qsize():
                    sample.late += 1  # every connection busy: this request waits for one
            queue.put_nowait((due, index))
            if index >= warm:
                sample.max_backlog = max(sample.max_backlog, queue.qsize())
        for _ in pool:
            queue.put_nowait(None)

    async def worker(number: int, connection: Connection) -> None:
        nonlocal idle
        while True:
            idle += 1
            item = await queue.get()
            idle -= 1
            if item is None:
                break
            due, index = item
            raw, stream = prepared[index % len(prepared)]
            if index < warm:
                await connection.exchange(raw, stream, scratch, due)
                continue
            running[number] = due
            answered = len(sample.latencies)
            await connection.exchange(raw, stream, sample, due)
            if len(sample.latencies) > answered:
                sample.timeline.append((due - began, sample.latencies[-1]))
            del running[number]
        connection.close()

    tasks = [asyncio.ensure_future(dispatch())]
    tasks += [asyncio.ensure_future(worker(n, c)) for n, c in enumerate(pool)]
    timeout = warmup + duration + (grace if grace is not None else duration + 5)
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    ended = time.perf_counter()
    if pending:
        # Whatever is still waiting or running took at least this long: count it so.
        waiting = [item for item in (queue.get_nowait() for _ in range(queue.qsize())) if item]
        recorded = [item[0] for item in waiting if item[1] >= warm]
        for due in [*running.values(), *recorded]:
            sample.unfinished += 1
            sample.latencies.append(ended - due)
            sample.timeline.append((due - began, ended - due))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for connection in pool:
            connection.close()
    sample.sent = total
    sample.warmup_done = scratch.ok + sum(scratch.errors.values())
    sample.elapsed = ended - began
    sample.scheduled_s = total * interval
    return sample


def run_async(coroutine: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def run_python(target: Target, body: dict[str, Any], concurrency: int, duration: float) -> Sample:
    return run_async(closed_loop(target, body, concurrency, duration))  # type: ignore[no-any-return]


def run_wrk(target: Target, body: dict[str, Any], concurrency: int, duration: float) -> Sample:
    """Non-stream load with wrk: less client CPU than Python, so more left for the servers."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        for name, value in {"Authorization": f"Bearer {target.key}", **target.headers}.items():
            script.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
    try:
        seconds = max(1, round(duration))
        out = subprocess.run(
            [
                "wrk",
                f"-t{min(2, concurrency)}",
                f"-c{concurrency}",
                f"-d{seconds}s",
                "--timeout",
                "30s",
                "--latency",
                "-s",
                script.name,
                target.url_for(body),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    total = int(_search(r"(\d+) requests in", out))
    sample = Sample(client="wrk", elapsed=float(seconds))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        sample.errors["non-2xx"] = int(non2xx.group(1))
    if sockets := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        for name, value in zip(("connect", "read", "write", "timeout"), sockets.groups(), strict=True):
            if int(value):
                sample.errors[f"socket {name}"] = int(value)
    sample.ok = total - sum(sample.errors.values())
    sample.elapsed = total / float(_search(r"Requests/sec:\s+([\d.]+)", out)) if total else float(seconds)

    def pct(label: str) -> float:
        match = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)\b", out)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    # No answer within the run: wrk still prints 0.00us percentiles, which are no measurement.
    sample.p50_ms, sample.p99_ms = (pct("50"), pct("99")) if sample.ok > 0 else (float("nan"), float("nan"))
    return sample


def _search(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    return match.group(1)
