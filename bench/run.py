"""The gateway's benchmark: direct-to-upstream vs through the gateway, in one run.

    .venv/bin/python bench/run.py [--quick] [--duration 10] [--concurrency 1,16,64] [--repeats 1]

Starts the fast fake upstream (bench/fake_upstream.py) and the gateway (uvicorn, 2 workers,
uvloop + httptools, JAN_INFERENCE_MODEL_URL pointing at the fake, `manage.py migrate` first, a
project key from `--key-command`), then at each concurrency runs a closed loop against both
targets, alternating them so drift on a shared host hits both alike, and measures:

- non-stream requests/s and p50/p99 latency (wrk when installed, else the Python client);
- streams/s and time to first token (first non-empty content delta), with a validating client;
- server CPU per request: utime+stime from /proc of the target's process tree (uvicorn parent and
  workers) and of the fake upstream, before/after each measurement, divided by requests.

It prints a table and the gateway/direct ratios and writes bench/results/latest.json.
See bench/README.md for how to read the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.live_server import free_port  # noqa: E402 -- the repository root is on the path just above

RESULTS = ROOT / "bench" / "results"
PY = sys.executable
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
TEMP_DIRS: list[str] = []  # throwaway SQLite data dirs, removed at exit
MODES = ("non_stream", "stream", "embeddings")  # embeddings: non-stream /v1/embeddings calls


# --- processes and /proc --------------------------------------------------------------------


def http_call(
    url: str, timeout: float = 2.0, data: bytes | None = None, key: str | None = None
) -> tuple[int, str]:
    """(status, body) of a GET, or of a POST when `data` is given; (0, reason) when nothing answers."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - http only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as error:
        return 0, str(error)


def wait_http(
    url: str, timeout: float = 60, what: str = "server", process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            sys.exit(f"the {what} exited with code {process.returncode} (see {RESULTS}/*.log)")
        if http_call(url, timeout=1)[0] != 0:
            return
        time.sleep(0.2)
    sys.exit(f"the {what} did not answer at {url} within {timeout:.0f} s")


def _proc_stat(pid: int) -> list[str] | None:
    try:
        # The command name may contain spaces or parentheses: split after the last ")".
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(roots: Iterable[int]) -> set[int]:
    """The roots and all their descendants, from one scan of /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


@dataclass
class ProcTree:
    """A server's processes (e.g. uvicorn's parent and its workers), re-scanned on every sample."""

    roots: list[int]

    @property
    def known(self) -> bool:
        return bool(self.roots)

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in descendants(self.roots):
            if fields := _proc_stat(pid):
                # fields[11], fields[12] are utime and stime (stat fields 14 and 15), all threads.
                total += (int(fields[11]) + int(fields[12])) / TICKS
        return total

    def rss_mb(self) -> float:
        total_pages = 0
        for pid in descendants(self.roots):
            with contextlib.suppress(OSError, IndexError, ValueError):
                total_pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        return total_pages * PAGE_KB / 1024


def pids_listening_on(port: int) -> list[int]:
    """Processes holding the listening socket of `port` (uvicorn's parent and workers share it)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                    inodes.add(parts[9])
    wanted = {f"socket:[{inode}]" for inode in inodes}
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in wanted for fd in (entry / "fd").iterdir()):
                pids.append(int(entry.name))
    return pids


def start(command: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = (RESULTS / log_name).open("wb")
    # Own session: a Ctrl-C reaches only this script, which then stops the servers in order.
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --- load generation ------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str  # server root
    tree: ProcTree

    @property
    def chat_url(self) -> str:
        return self.url.rstrip("/") + CHAT_PATH

    def url_for(self, body: dict[str, Any]) -> str:
        """The endpoint a benchmark body goes to: embeddings bodies have `input`."""
        return self.url.rstrip("/") + EMBEDDINGS_PATH if "input" in body else self.chat_url


@dataclass
class Sample:
    """What one closed-loop run saw."""

    ok: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, whole response
    ttfts: list[float] = field(default_factory=list)  # seconds, streams only
    errors: Counter[str] = field(default_factory=Counter)
    client: str = "python"
    # wrk reports percentiles itself; the Python client's come from `latencies`.
    p50_ms: float | None = None
    p99_ms: float | None = None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def request_bytes(url: str, key: str, body: dict[str, Any]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit(f"only http:// targets are supported, not {url}")
    port = parts.port or 80
    payload = orjson.dumps(body)
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.hostname}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\nAccept: application/json\r\n"
        f"User-Agent: jan-gateway-bench\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return parts.hostname, port, head.encode() + payload


class BadResponse(Exception):
    pass


async def read_response(reader: asyncio.StreamReader, on_data: Any) -> tuple[int, bool]:
    """Read one HTTP/1.1 response, passing body bytes to `on_data`; returns (status, keep-alive).

    A minimal client on raw asyncio streams: httpx costs several times more CPU per request, and
    the client shares the two cores with the servers being measured.
    """
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


async def closed_loop(
    target: Target, key: str, body: dict[str, Any], concurrency: int, duration: float
) -> Sample:
    """`concurrency` connections, each sending its next request as soon as the last one ends."""
    host, port, raw = request_bytes(target.url_for(body), key, body)
    stream = bool(body.get("stream"))
    sample = Sample()
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while time.perf_counter() < stop_at:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                started = time.perf_counter()
                writer.write(raw)
                if stream:
                    check = StreamCheck(started)
                    status, keep_alive = await read_response(reader, check.feed)
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
                        sample.latencies.append(ended - started)
                        sample.ttfts.append(check.first_token - started)
                else:
                    parts: list[bytes] = []
                    status, keep_alive = await read_response(reader, parts.append)
                    ended = time.perf_counter()
                    if status != 200:
                        sample.errors[f"http {status}"] += 1
                    elif not _has_answer(orjson.loads(b"".join(parts))):
                        sample.errors["empty content"] += 1
                    else:
                        sample.ok += 1
                        sample.latencies.append(ended - started)
                if not keep_alive:
                    writer.close()
                    reader = writer = None
            except (
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ValueError,
                KeyError,
                IndexError,
                TypeError,
                BadResponse,
            ) as error:
                sample.errors[type(error).__name__] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.01)  # don't spin on a refused connection
        if writer is not None:
            writer.close()

    began = time.perf_counter()
    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    # A hung server must not hang the benchmark: give stragglers 30 s past the end.
    _, pending = await asyncio.wait(tasks, timeout=duration + 30)
    for task in pending:
        task.cancel()
        sample.errors["timeout"] += 1
    sample.elapsed = time.perf_counter() - began
    return sample


def run_python(target: Target, key: str, body: dict[str, Any], concurrency: int, duration: float) -> Sample:
    try:
        import uvloop

        return uvloop.run(closed_loop(target, key, body, concurrency, duration))
    except ImportError:
        return asyncio.run(closed_loop(target, key, body, concurrency, duration))


def run_wrk(target: Target, key: str, body: dict[str, Any], concurrency: int, duration: float) -> Sample:
    """Non-stream load with wrk: less client CPU than Python, so more left for the servers."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        )
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

    sample.p50_ms, sample.p99_ms = pct("50"), pct("99")
    return sample


def _search(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    return match.group(1)


# --- one measurement point ------------------------------------------------------------------


def client_cpu_seconds() -> float:
    """This script's CPU plus that of finished children (wrk): the load generator's cost."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(
    target: Target,
    upstream: ProcTree,
    mode: str,
    key: str,
    model: str,
    concurrency: int,
    duration: float,
    use_wrk: bool,
) -> dict[str, Any]:
    messages = [{"role": "user", "content": "hello bench"}]
    body: dict[str, Any] = {"model": model, "messages": messages}
    if mode == "stream":
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    if mode == "embeddings":
        body = {"model": model, "input": "hello bench", "encoding_format": "float"}
    same_process = set(upstream.roots) == set(target.tree.roots)
    before = (target.tree.cpu_seconds(), upstream.cpu_seconds(), client_cpu_seconds())
    if mode in ("non_stream", "embeddings") and use_wrk:
        sample = run_wrk(target, key, body, concurrency, duration)
    else:
        sample = run_python(target, key, body, concurrency, duration)
    after = (target.tree.cpu_seconds(), upstream.cpu_seconds(), client_cpu_seconds())
    done = max(sample.ok + sum(sample.errors.values()), 1)
    result: dict[str, Any] = {
        "client": sample.client,
        "requests": sample.ok,
        "errors": dict(sample.errors),
        "per_s": sample.ok / sample.elapsed if sample.elapsed else 0.0,
        "p50_ms": sample.p50_ms if sample.p50_ms is not None else percentile(sample.latencies, 0.5) * 1000,
        "p99_ms": sample.p99_ms if sample.p99_ms is not None else percentile(sample.latencies, 0.99) * 1000,
        "server_cpu_ms": (after[0] - before[0]) * 1000 / done if target.tree.known else None,
        # The upstream's share (for "direct" it is the target itself): subtract it to see what
        # the gateway alone costs, or compare it across targets to spot extra upstream calls.
        "upstream_cpu_ms": (after[1] - before[1]) * 1000 / done
        if upstream.known and not same_process
        else None,
        "client_cpu_ms": (after[2] - before[2]) * 1000 / done,
    }
    if mode == "stream":
        result["ttft_p50_ms"] = percentile(sample.ttfts, 0.5) * 1000
        result["ttft_p99_ms"] = percentile(sample.ttfts, 0.99) * 1000
    return result


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-metric median over repeats; error counts are summed."""
    merged: dict[str, Any] = {"client": runs[0]["client"], "repeats": len(runs)}
    errors: Counter[str] = Counter()
    for run in runs:
        errors.update(run["errors"])
    merged["errors"] = dict(errors)
    for name in runs[0]:
        if name in ("client", "errors"):
            continue
        values = [run[name] for run in runs if run[name] is not None and run[name] == run[name]]  # no NaN
        merged[name] = statistics.median(values) if values else None
    return merged


# --- setup ------------------------------------------------------------------------------------


def gateway_env(upstream_url: str, fresh_database: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["JAN_INFERENCE_MODEL_URL"] = upstream_url
    env["DJANGO_DEBUG"] = "false"  # DEBUG keeps every SQL query in memory: not what production runs
    env.setdefault("GATEWAY_ENV", "dev")
    env.setdefault("LOG_LEVEL", "INFO")  # production logging: one JSON access line per request
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Metrics on, shared across the workers through files, as `make run` has them.
    env.setdefault("METRICS_ENABLED", "true")
    if "PROMETHEUS_MULTIPROC_DIR" not in env:
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-prometheus-")
        TEMP_DIRS.append(env["PROMETHEUS_MULTIPROC_DIR"])
    has_database = env.get("DATABASE_URL") or env.get("DB_POSTGRESQL_WRITE_DSN")
    if fresh_database and not has_database:
        # Embedded SQLite: a throwaway database, so the run neither needs nor touches .data/.
        env["GATEWAY_DATA_DIR"] = tempfile.mkdtemp(prefix="jan-bench-")
        TEMP_DIRS.append(env["GATEWAY_DATA_DIR"])
        env.pop("SQLITE_PATH", None)
    return env


def create_key(command: str, env: dict[str, str]) -> str:
    argv = shlex.split(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = PY  # the venv's interpreter, whatever `python` is on PATH
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not lines:
        sys.exit(
            f"could not get an API key from `{command}` (exit {result.returncode}):\n"
            f"{result.stderr.strip()[-2000:]}\n"
            "Pass --api-key KEY, or --key-command 'python manage.py createprojectkey --email bench@example.com'."
        )
    return lines[-1]  # the key is the last line; anything before it is chatter


def wait_ready(target: Target, key: str, model: str, timeout: float = 60) -> None:
    """Until a chat completion through the target succeeds (provider registered, models listed)."""
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "ready?"}]})
    deadline = time.monotonic() + timeout
    status, text = 0, ""
    while time.monotonic() < deadline:
        status, text = http_call(target.chat_url, timeout=5, data=body, key=key)
        if status == 200:
            return
        time.sleep(0.5)
    sys.exit(
        f"{target.name}: {target.chat_url} never answered a chat completion with 200; last {status}: {text[:500]}"
    )


# --- report -------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None or value != value else format(value, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b and a == a and b == b else None


def diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def clean(value: Any) -> Any:
    """NaN (no sample) becomes null: JSON has no NaN."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def ratios(direct: dict[str, Any], gateway: dict[str, Any]) -> dict[str, Any]:
    ns_d, ns_g, st_d, st_g = direct["non_stream"], gateway["non_stream"], direct["stream"], gateway["stream"]
    return {
        "req_per_s": ratio(ns_g["per_s"], ns_d["per_s"]),
        "streams_per_s": ratio(st_g["per_s"], st_d["per_s"]),
        "added_p50_ms": diff(ns_g["p50_ms"], ns_d["p50_ms"]),
        "added_p99_ms": diff(ns_g["p99_ms"], ns_d["p99_ms"]),
        "added_ttft_p50_ms": diff(st_g["ttft_p50_ms"], st_d["ttft_p50_ms"]),
        "gateway_cpu_ms_per_request": ns_g["server_cpu_ms"],
        "gateway_cpu_ms_per_stream": st_g["server_cpu_ms"],
        "embeddings_per_s": ratio(gateway["embeddings"]["per_s"], direct["embeddings"]["per_s"]),
        "added_embeddings_p50_ms": diff(gateway["embeddings"]["p50_ms"], direct["embeddings"]["p50_ms"]),
        "gateway_cpu_ms_per_embedding": gateway["embeddings"]["server_cpu_ms"],
    }


def print_report(points: dict[str, dict[str, Any]], names: list[str]) -> None:
    print()
    print(
        f"{'C':>3}  {'target':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/req':>10}  "
        f"{'streams/s':>9} {'ttft p50':>9} {'cpu ms/strm':>11}  {'errors':>6}"
    )
    for level, point in points.items():
        for name in names:
            ns, st = point[name]["non_stream"], point[name]["stream"]
            errors = sum(ns["errors"].values()) + sum(st["errors"].values())
            print(
                f"{level.removeprefix('c'):>3}  {name:8} {fmt(ns['per_s'], '.0f'):>9} {fmt(ns['p50_ms'], '.2f'):>8} "
                f"{fmt(ns['p99_ms'], '.2f'):>8} {fmt(ns['server_cpu_ms'], '.2f'):>10}  {fmt(st['per_s'], '.0f'):>9} "
                f"{fmt(st['ttft_p50_ms'], '.2f'):>9} {fmt(st['server_cpu_ms'], '.2f'):>11}  {errors:>6}"
            )
            em = point[name]["embeddings"]
            print(
                f"{'':5}{name:8} embeddings {fmt(em['per_s'], '.0f')}/s  p50 {fmt(em['p50_ms'], '.2f')} ms  "
                f"cpu {fmt(em['server_cpu_ms'], '.2f')} ms/req"
            )
            for mode, data in (("non-stream", ns), ("stream", st), ("embeddings", em)):
                if data["errors"]:
                    print(f"{'':5}{name} {mode} errors: {data['errors']}")
    print("\ngateway / direct:")
    for level, point in points.items():
        r = point["ratios"]
        print(
            f"  C={level.removeprefix('c'):<3} req/s x{fmt(r['req_per_s'], '.3f')}  streams/s x{fmt(r['streams_per_s'], '.3f')}  "
            f"added p50 {fmt(r['added_p50_ms'], '+.2f')} ms  added ttft {fmt(r['added_ttft_p50_ms'], '+.2f')} ms  "
            f"gateway cpu {fmt(r['gateway_cpu_ms_per_request'], '.2f')} ms/req, {fmt(r['gateway_cpu_ms_per_stream'], '.2f')} ms/stream, "
            f"{fmt(r['gateway_cpu_ms_per_embedding'], '.2f')} ms/embedding"
        )


# --- main -----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--quick", action="store_true", help="2 s per measurement")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated levels (default 1,16,64)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per point and target; medians reported")
    parser.add_argument("--workers", type=int, default=2, help="gateway uvicorn workers (default 2)")
    parser.add_argument(
        "--server",
        choices=("uvicorn", "daphne"),
        help="start the gateway with `python -m gateway.server` and this SERVER (daphne: one process)",
    )
    parser.add_argument("--model", default="bench-model")
    parser.add_argument(
        "--chunk-delay-ms", type=float, default=0.0, help="fake upstream pacing between content chunks"
    )
    parser.add_argument(
        "--client", choices=("auto", "wrk", "python"), default="auto", help="non-stream load generator"
    )
    parser.add_argument(
        "--key-command",
        default="python manage.py createprojectkey --email bench@example.com",
        help="prints a project API key on stdout",
    )
    parser.add_argument("--api-key", help="use this key instead of running --key-command")
    parser.add_argument(
        "--gateway-url", help="bench this already-running gateway (server root) instead of starting one"
    )
    parser.add_argument(
        "--gateway-pid", type=int, action="append", help="its process ids (default: found by port)"
    )
    parser.add_argument(
        "--upstream-url", help="use this upstream for the direct target instead of starting the fake"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    duration = 2.0 if args.quick else args.duration
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    if use_wrk and not shutil.which("wrk"):
        sys.exit("--client wrk: wrk is not installed (apt-get install -y wrk)")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # The upstream: the fast fake unless one was given.
        if args.upstream_url:
            upstream_url = args.upstream_url.rstrip("/")
            upstream_port = urlsplit(upstream_url).port or 80
            upstream_tree = ProcTree(pids_listening_on(upstream_port))
        else:
            upstream_port = free_port()
            upstream_url = f"http://127.0.0.1:{upstream_port}"
            fake = start(
                [
                    PY,
                    "bench/fake_upstream.py",
                    "--port",
                    str(upstream_port),
                    "--model",
                    args.model,
                    "--chunk-delay-ms",
                    str(args.chunk_delay_ms),
                ],
                "upstream.log",
            )
            processes.append(fake)
            upstream_tree = ProcTree([fake.pid])
        wait_http(
            upstream_url + "/v1/models", what="fake upstream", process=processes[0] if processes else None
        )

        # The gateway: an already-running one, or ours under uvicorn.
        database = "external gateway"
        if args.gateway_url:
            gateway_url = args.gateway_url.rstrip("/")
            pids = args.gateway_pid or pids_listening_on(urlsplit(gateway_url).port or 80)
            gateway_tree = ProcTree(pids)
            key = args.api_key or create_key(
                args.key_command, gateway_env(upstream_url, fresh_database=False)
            )
            wait_http(gateway_url + "/", what="gateway")
        else:
            env = gateway_env(upstream_url, fresh_database=not args.api_key)
            database = (
                "postgresql" if (env.get("DATABASE_URL") or env.get("DB_POSTGRESQL_WRITE_DSN")) else "sqlite"
            )
            print(f"migrating ({database}, redis: {'yes' if env.get('REDIS_URL') else 'no'}) ...", flush=True)
            subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
            key = args.api_key or create_key(args.key_command, env)
            # Register JAN_INFERENCE_MODEL_URL and poll it now (beat would, after an interval).
            subprocess.run([PY, "manage.py", "checkproviders"], cwd=ROOT, env=env, check=True)
            port = free_port()
            server_env = dict(env, SERVER=args.server or "", HOST="127.0.0.1", PORT=str(port))
            server_env["WEB_CONCURRENCY"] = str(args.workers)
            gateway = start([PY, "-m", "gateway.server"], "gateway.log", server_env) if args.server else start(
                [
                    str(Path(PY).parent / "uvicorn"),
                    "gateway.asgi:application",
                    "--host", "127.0.0.1",
                    "--port", str(port),
                    "--workers", str(args.workers),
                    "--no-access-log",
                    "--loop", "uvloop",
                    "--http", "httptools",
                ],
                "gateway.log",
                env,
            )  # fmt: skip
            processes.append(gateway)
            gateway_url = f"http://127.0.0.1:{port}"
            gateway_tree = ProcTree([gateway.pid])
            wait_http(gateway_url + "/healthcheck", what="gateway", process=gateway)

        targets = [
            Target("direct", upstream_url, upstream_tree),
            Target("gateway", gateway_url, gateway_tree),
        ]
        if not gateway_tree.known:
            print(
                "note: gateway processes not found (pass --gateway-pid): no gateway CPU figures",
                file=sys.stderr,
            )
        for target in targets:
            wait_ready(target, key, args.model)
        rss_idle = {t.name: t.tree.rss_mb() if t.tree.known else None for t in targets}
        # Warm-up: connection pools, key cache, model registry, lazy imports in every worker.
        for target in targets:
            for mode in MODES:
                measure(target, upstream_tree, mode, key, args.model, 8, 1.0, use_wrk=False)

        print(
            f"measuring C={','.join(map(str, levels))}, {duration:g} s x {args.repeats} per point and mode, "
            f"non-stream client {'wrk' if use_wrk else 'python'}",
            flush=True,
        )
        points: dict[str, dict[str, Any]] = {}
        for level_index, concurrency in enumerate(levels):
            runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for repeat in range(args.repeats):
                for mode_index, mode in enumerate(MODES):
                    # Alternate which target goes first so slow host drift does not favour one.
                    flip = (level_index + repeat + mode_index) % 2 == 1
                    for target in reversed(targets) if flip else targets:
                        result = measure(
                            target, upstream_tree, mode, key, args.model, concurrency, duration, use_wrk
                        )
                        runs.setdefault((target.name, mode), []).append(result)
                        print(
                            f"  C={concurrency:<3} {target.name:8} {mode:10} {result['per_s']:9.1f}/s  "
                            f"p50 {result['p50_ms']:8.2f} ms  errors {sum(result['errors'].values())}",
                            flush=True,
                        )
            point: dict[str, Any] = {
                t.name: {mode: median_of(runs[(t.name, mode)]) for mode in MODES} for t in targets
            }
            point["ratios"] = ratios(point["direct"], point["gateway"])
            points[f"c{concurrency}"] = point

        print_report(points, [t.name for t in targets])
        report = {
            "meta": {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "host": platform.node(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "duration_s": duration,
                "repeats": args.repeats,
                "concurrency": levels,
                "workers": None if args.gateway_url else args.workers,
                "database": database,
                "redis": bool(os.environ.get("REDIS_URL")),
                "non_stream_client": "wrk" if use_wrk else "python",
                "chunk_delay_ms": args.chunk_delay_ms,
                "targets": {t.name: t.url for t in targets},
                "rss_idle_mb": rss_idle,
                "rss_end_mb": {t.name: t.tree.rss_mb() if t.tree.known else None for t in targets},
            },
            "points": points,
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(clean(report), indent=2, allow_nan=False) + "\n")
        print(f"\nwritten to {args.output}")
    finally:
        for process in reversed(processes):
            stop(process)
        for path in TEMP_DIRS:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
