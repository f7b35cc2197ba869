"""The gateway's benchmark: direct-to-upstream vs through the gateway (and peers), in one run.

    .venv/bin/python bench/run.py [--quick] [--duration 10] [--concurrency 1,16,64] [--repeats 1]
                                  [--rate 300] [--peers litellm,portkey] [--soak SECONDS]

Starts the fast fake upstream (bench/fake_upstream.py), then:

1. memory: the whole `make run` tree (`python -m gateway.supervisor Procfile`: web, Celery
   worker, beat), idle after start-up: RSS and PSS per process and in total; with `--soak`,
   paced load for that long and the tree's RSS/PSS every 10 s (bench/memory.py);
2. the gateway's web server as `make run` starts it (the Procfile's web line under
   `gateway.supervisor`, WEB_CONCURRENCY=`--workers`, access log, metrics and usage rows on),
   and the `--peers` (bench/peer_servers.py), all proxying to the same fake;
3. at each concurrency, a closed loop against every target in turn, rotating who goes first so
   drift on a shared host hits all alike: non-stream req/s and p50/p99 (wrk when installed,
   else the Python client), streams/s and time to first token (a validating client),
   embeddings calls, and server CPU per request: utime+stime from /proc of each target's
   process tree, before/after each measurement, divided by requests;
4. an open-loop point: non-stream chat at a fixed arrival rate (`--rate`, below saturation),
   latency from each request's scheduled send time (bench/load.py), p50/p99 per target and
   the goal "gateway p99 <= 2 x direct p99 + 5 ms".

It prints tables, the gateway/direct and gateway/peer ratios and the goal line, and writes
bench/results/latest.json. See bench/README.md for how to read the numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The repository root is on the path just above.
from bench.load import Target, open_loop, percentile, run_async, run_python, run_wrk  # noqa: E402
from bench.memory import measure_make_run, print_memory  # noqa: E402
from bench.peer_servers import PEERS, PeerUnavailable, start_peer  # noqa: E402
from bench.procs import (  # noqa: E402
    PY,
    RESULTS,
    ProcTree,
    http_call,
    pids_listening_on,
    procfile_entries,
    start,
    stop,
    wait_http,
)
from tests.live_server import free_port  # noqa: E402

TEMP_DIRS: list[str] = []  # throwaway SQLite data dirs, removed at exit
MODES = ("non_stream", "stream", "embeddings")  # embeddings: non-stream /v1/embeddings calls
# The open-loop goal: the gateway's p99 at the fixed rate within twice direct's plus this.
GOAL_FACTOR = 2.0
GOAL_SLACK_MS = 5.0


# --- one measurement point ------------------------------------------------------------------


def client_cpu_seconds() -> float:
    """This script's CPU plus that of finished children (wrk): the load generator's cost."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def open_warmup(duration: float) -> float:
    """Seconds of the open-loop schedule sent before recording: 2, or half a short run."""
    return min(2.0, duration / 2)


def quiesce(tree: ProcTree, timeout: float = 15.0) -> None:
    """Wait until the target is nearly idle: a saturated one (LiteLLM at C=64) still works through
    the requests the client gave up on, and that CPU must not slow down the next target."""
    if not tree.known:
        return
    deadline = time.monotonic() + timeout
    last = tree.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = tree.cpu_seconds()
        if now - last < 0.05:  # under a fifth of a core over the interval
            return
        last = now


def body_for(mode: str, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hello bench"}]}
    if mode == "stream":
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    if mode == "embeddings":
        body = {"model": model, "input": "hello bench", "encoding_format": "float"}
    return body


def measure(
    target: Target,
    upstream: ProcTree,
    mode: str,
    model: str,
    concurrency: int,
    duration: float,
    use_wrk: bool,
    rate: float = 0.0,
) -> dict[str, Any]:
    """One measurement. mode "open_loop": non-stream chat at `rate`, up to `concurrency` connections."""
    body = body_for("non_stream" if mode == "open_loop" else mode, model)
    same_process = set(upstream.roots) == set(target.tree.roots)
    before = (target.tree.cpu_seconds(), upstream.cpu_seconds(), client_cpu_seconds())
    if mode == "open_loop":
        sample = run_async(
            open_loop(target, [body], rate, duration, connections=concurrency, warmup=open_warmup(duration))
        )
    elif mode in ("non_stream", "embeddings") and use_wrk:
        sample = run_wrk(target, body, concurrency, duration)
    else:
        sample = run_python(target, body, concurrency, duration)
    after = (target.tree.cpu_seconds(), upstream.cpu_seconds(), client_cpu_seconds())
    quiesce(target.tree)
    # The open loop's warm-up requests ran inside the CPU reading too.
    done = max(sample.ok + sum(sample.errors.values()) + sample.warmup_done, 1)
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
    if mode == "open_loop":
        result |= {
            "rate": rate,
            "scheduled": sample.sent,
            # Answered (or failed) requests per second of schedule: the rate unless the target
            # fell so far behind that some were still waiting at the end.
            "done_per_s": (sample.ok + sum(sample.errors.values())) / sample.scheduled_s
            if sample.scheduled_s
            else 0.0,
            "max_ms": max(sample.latencies) * 1000 if sample.latencies else None,
            "waited": sample.late,  # found all `concurrency` connections busy
            "max_backlog": sample.max_backlog,
            "unfinished": sample.unfinished,
            "generator_max_lag_ms": sample.max_lag * 1000,
            # The worst latency of the requests due in each second of the run: one stall or a
            # steady climb (a target falling behind) look different here.
            "max_ms_by_second": per_second_max(sample.timeline, sample.scheduled_s),
        }
    return result


def per_second_max(timeline: list[tuple[float, float]], seconds: float) -> list[float | None]:
    worst: list[float | None] = [None] * max(1, math.ceil(seconds))
    for offset, latency in timeline:
        slot = min(len(worst) - 1, max(0, int(offset)))
        worst[slot] = max(worst[slot] or 0.0, latency * 1000)
    return worst


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
        if isinstance(runs[0][name], list):  # a series: each repeat's
            merged[name] = [run[name] for run in runs]
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


def wait_ready(target: Target, model: str, timeout: float = 60) -> None:
    """Until a chat completion through the target succeeds (provider registered, models listed)."""
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "ready?"}]})
    deadline = time.monotonic() + timeout
    status, text = 0, ""
    while time.monotonic() < deadline:
        status, text = http_call(
            target.chat_url, timeout=5, data=body, key=target.key, headers=target.headers
        )
        if status == 200:
            return
        time.sleep(0.5)
    sys.exit(
        f"{target.name}: {target.chat_url} never answered a chat completion with 200; last {status}: {text[:500]}"
    )


def start_gateway(server: str, workers: int, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, str]:
    """The gateway under test: (process, URL, what it is)."""
    port = free_port()
    server_env = dict(env, HOST="127.0.0.1", PORT=str(port), WEB_CONCURRENCY=str(workers))
    if server == "bare-uvicorn":
        # The escape hatch: uvicorn's CLI without gateway.server's protocol guards or settings.
        command = [
            str(Path(PY).parent / "uvicorn"), "gateway.asgi:application",
            "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers),
            "--no-access-log", "--loop", "uvloop", "--http", "httptools",
        ]  # fmt: skip
        what = f"bare uvicorn CLI, {workers} workers (not what `make run` starts)"
    else:
        # The web server exactly as `make run` starts it: the supervisor with the Procfile's web
        # line, so its process layout (one uvicorn parent with workers, or single-process
        # servers sharing the port), environment and restarts are the ones measured.
        web = [(name, line) for name, line in procfile_entries(ROOT / "Procfile") if name == "web"]
        if not web:
            sys.exit("the Procfile has no `web:` line")
        procfile = RESULTS / "web.Procfile"
        RESULTS.mkdir(parents=True, exist_ok=True)
        procfile.write_text("".join(f"{name}: {line}\n" for name, line in web))
        command = [PY, "-m", "gateway.supervisor", str(procfile)]
        if server == "uvicorn":
            server_env.pop("SERVER", None)  # the default, as in `make run`
        else:
            server_env["SERVER"] = server
        what = (
            f"the Procfile's web line ({web[0][1]}) under gateway.supervisor, SERVER={server}, "
            f"WEB_CONCURRENCY={workers}: as `make run` starts it"
        )
    process = start(command, "gateway.log", server_env)
    return process, f"http://127.0.0.1:{port}", what


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


def peer_ratios(gateway: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    """gateway / peer: above 1 for throughput means the gateway does more; below 1 for CPU, less."""
    return {
        "req_per_s": ratio(gateway["non_stream"]["per_s"], peer["non_stream"]["per_s"]),
        "streams_per_s": ratio(gateway["stream"]["per_s"], peer["stream"]["per_s"]),
        "embeddings_per_s": ratio(gateway["embeddings"]["per_s"], peer["embeddings"]["per_s"]),
        "cpu_per_request": ratio(gateway["non_stream"]["server_cpu_ms"], peer["non_stream"]["server_cpu_ms"]),
        "cpu_per_stream": ratio(gateway["stream"]["server_cpu_ms"], peer["stream"]["server_cpu_ms"]),
        "p50": ratio(gateway["non_stream"]["p50_ms"], peer["non_stream"]["p50_ms"]),
        "ttft_p50": ratio(gateway["stream"]["ttft_p50_ms"], peer["stream"]["ttft_p50_ms"]),
    }


def goal(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """gateway p99 <= 2 x direct p99 + 5 ms at the open-loop rate."""
    direct, gateway = results["direct"]["p99_ms"], results["gateway"]["p99_ms"]
    budget = GOAL_FACTOR * direct + GOAL_SLACK_MS if direct is not None else None
    clean_run = all(
        not results[name]["errors"] and not results[name]["unfinished"] for name in ("direct", "gateway")
    )
    return {
        "rule": f"gateway p99 <= {GOAL_FACTOR:g} x direct p99 + {GOAL_SLACK_MS:g} ms",
        "gateway_p99_ms": gateway,
        "direct_p99_ms": direct,
        "budget_ms": budget,
        # The share of the budget the gateway's p99 uses: at most 1 meets the goal.
        "ratio": ratio(gateway, budget),
        "met": bool(gateway is not None and budget is not None and gateway <= budget and clean_run),
        "without_errors": clean_run,
        # The generator's own worst delay in either row: above the slack, the host stalled the
        # whole machine during the point and both p99s carry that stall.
        "generator_max_lag_ms": max(
            results[name]["generator_max_lag_ms"] or 0.0 for name in ("direct", "gateway")
        ),
    }


def print_report(points: dict[str, dict[str, Any]], names: list[str], peers: list[str]) -> None:
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
    for peer in peers:
        print(f"\ngateway / {peer} (throughput above 1: the gateway does more; CPU below 1: it spends less):")
        for level, point in points.items():
            r = point["vs_peers"][peer]
            print(
                f"  C={level.removeprefix('c'):<3} req/s x{fmt(r['req_per_s'], '.2f')}  streams/s x{fmt(r['streams_per_s'], '.2f')}  "
                f"embeddings/s x{fmt(r['embeddings_per_s'], '.2f')}  cpu/req x{fmt(r['cpu_per_request'], '.2f')}  "
                f"cpu/stream x{fmt(r['cpu_per_stream'], '.2f')}  p50 x{fmt(r['p50'], '.2f')}  ttft x{fmt(r['ttft_p50'], '.2f')}"
            )


def print_open_loop(open_point: dict[str, Any], names: list[str]) -> None:
    print(
        f"\nopen loop: {open_point['rate']:g} req/s of non-stream chat for {open_point['duration_s']:g} s per target, "
        f"up to {open_point['connections']} connections, after {open_point['warmup_s']:g} s unrecorded; "
        "latency from each request's scheduled send time"
    )
    print(
        f"  {'target':8} {'done/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'cpu ms/req':>10} "
        f"{'waited':>6} {'unfinished':>10} {'errors':>6} {'gen lag ms':>10}"
    )
    for name in names:
        r = open_point["targets"][name]
        errors = sum(r["errors"].values())
        saturated = "  saturated" if r["unfinished"] or r["waited"] > 0.01 * max(r["requests"], 1) else ""
        print(
            f"  {name:8} {fmt(r['done_per_s'], '.1f'):>7} {fmt(r['p50_ms'], '.2f'):>8} {fmt(r['p99_ms'], '.2f'):>8} "
            f"{fmt(r['max_ms'], '.1f'):>8} {fmt(r['server_cpu_ms'], '.2f'):>10} {r['waited']:>6} "
            f"{r['unfinished']:>10} {errors:>6} {fmt(r['generator_max_lag_ms'], '.1f'):>10}{saturated}"
        )
        if r["errors"]:
            print(f"{'':5}{name} open-loop errors: {r['errors']}")
    repeats = open_point["targets"]["gateway"]["max_ms_by_second"]
    if len(repeats[0]) <= 30:
        print(
            "  gateway, worst latency of the requests due in each second (ms): "
            + " | ".join(" ".join(fmt(value, ".0f") for value in series) for series in repeats)
        )
    g = open_point["goal"]
    verdict = (
        "met" if g["met"] else "NOT met" + ("" if g["without_errors"] else " (errors or unfinished requests)")
    )
    print(
        f"goal: {g['rule']}: {fmt(g['gateway_p99_ms'], '.2f')} ms <= {GOAL_FACTOR:g} x {fmt(g['direct_p99_ms'], '.2f')} "
        f"+ {GOAL_SLACK_MS:g} = {fmt(g['budget_ms'], '.2f')} ms: {verdict} (gateway p99 / budget = {fmt(g['ratio'], '.2f')})"
    )
    if g["generator_max_lag_ms"] > GOAL_SLACK_MS:
        print(
            f"      note: the load generator itself fell up to {g['generator_max_lag_ms']:.0f} ms behind: the host "
            "stalled during the point and both p99s carry it; rerun on a quieter host or with --repeats 3"
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
        choices=("uvicorn", "daphne", "bare-uvicorn"),
        default="uvicorn",
        help="uvicorn/daphne: `python -m gateway.server` with this SERVER (uvicorn: as `make run`); "
        "bare-uvicorn: the uvicorn CLI on gateway.asgi, without gateway.server",
    )
    parser.add_argument(
        "--rate", type=float, default=300, help="open-loop arrival rate, req/s (default 300; 0 skips it)"
    )
    parser.add_argument(
        "--open-connections", type=int, default=64, help="open-loop connections at most (default 64)"
    )
    parser.add_argument(
        "--peers", default="", help=f"other gateways measured in the same run: {','.join(PEERS)}"
    )
    parser.add_argument("--peer-workers", type=int, default=2, help="LiteLLM's --num_workers (default 2)")
    memory = parser.add_mutually_exclusive_group()
    memory.add_argument("--no-memory", action="store_true", help="skip the `make run` memory section")
    memory.add_argument("--memory-only", action="store_true", help="only the memory section (and --soak)")
    parser.add_argument(
        "--settle", type=float, default=5, help="seconds the `make run` tree idles before its memory is read"
    )
    parser.add_argument(
        "--soak", type=float, default=0, help="seconds of paced load on the `make run` tree, RSS every 10 s"
    )
    parser.add_argument("--soak-rate", type=float, default=100, help="soak arrival rate, req/s (default 100)")
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
    args = parser.parse_args()
    args.peer_names = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = [name for name in args.peer_names if name not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}")
    return args


def rotation(targets: list[Target], turn: int) -> list[Target]:
    """The targets, starting at a different one each turn, so none always goes first."""
    shift = turn % len(targets)
    return targets[shift:] + targets[:shift]


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(report), indent=2, allow_nan=False) + "\n")
    print(f"\nwritten to {path}")


def main() -> None:
    args = parse_args()
    duration = 2.0 if args.quick else args.duration
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    if use_wrk and not shutil.which("wrk"):
        sys.exit("--client wrk: wrk is not installed (apt-get install -y wrk)")
    processes: list[subprocess.Popen[bytes]] = []
    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "duration_s": duration,
        "repeats": args.repeats,
        "concurrency": levels,
        "redis": bool(os.environ.get("REDIS_URL")),
        "non_stream_client": "wrk" if use_wrk else "python",
        "chunk_delay_ms": args.chunk_delay_ms,
    }
    report: dict[str, Any] = {"meta": meta}
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

        # The gateway: an already-running one, or ours as `make run` starts it.
        if args.gateway_url:
            meta["database"] = "external gateway"
            gateway_url = args.gateway_url.rstrip("/")
            pids = args.gateway_pid or pids_listening_on(urlsplit(gateway_url).port or 80)
            gateway_tree = ProcTree(pids)
            key = args.api_key or create_key(
                args.key_command, gateway_env(upstream_url, fresh_database=False)
            )
            wait_http(gateway_url + "/", what="gateway")
            meta["gateway"] = f"already running at {gateway_url}"
        else:
            env = gateway_env(upstream_url, fresh_database=not args.api_key)
            meta["database"] = (
                "postgresql" if (env.get("DATABASE_URL") or env.get("DB_POSTGRESQL_WRITE_DSN")) else "sqlite"
            )
            print(
                f"migrating ({meta['database']}, redis: {'yes' if env.get('REDIS_URL') else 'no'}) ...",
                flush=True,
            )
            subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
            key = args.api_key or create_key(args.key_command, env)
            # Register JAN_INFERENCE_MODEL_URL and poll it now (beat would, after an interval).
            subprocess.run([PY, "manage.py", "checkproviders"], cwd=ROOT, env=env, check=True)

            # Memory first, while nothing else of the bench runs beside the fake.
            if not args.no_memory:
                report["memory"] = measure_make_run(
                    env, args.settle, args.soak, args.soak_rate, key, args.model
                )
                print_memory(report["memory"])
            if args.memory_only:
                write_report(args.output, report)
                return

            gateway, gateway_url, meta["gateway"] = start_gateway(args.server, args.workers, env)
            processes.append(gateway)
            gateway_tree = ProcTree([gateway.pid])
            wait_http(gateway_url + "/healthcheck", what="gateway", process=gateway)
            meta["workers"] = args.workers
            meta["server"] = args.server
        if args.memory_only:
            sys.exit("--memory-only needs the bench to start the gateway (no --gateway-url)")

        targets = [
            Target("direct", upstream_url, upstream_tree, key=key, note="the fake upstream itself"),
            Target("gateway", gateway_url, gateway_tree, key=key, note=meta["gateway"]),
        ]
        meta["peers"] = {}
        for name in args.peer_names:
            print(f"starting peer {name} ...", flush=True)
            try:
                peer, process = start_peer(name, upstream_url, args.model, args.peer_workers)
            except PeerUnavailable as error:
                print(f"peer {name} unavailable, going on without it: {error}", file=sys.stderr, flush=True)
                meta["peers"][name] = f"unavailable: {error}"
                continue
            processes.append(process)
            targets.append(peer)
            meta["peers"][name] = peer.note
        peers = [t.name for t in targets[2:]]
        if not gateway_tree.known:
            print(
                "note: gateway processes not found (pass --gateway-pid): no gateway CPU figures",
                file=sys.stderr,
            )
        for target in targets:
            wait_ready(target, args.model)
        meta["targets"] = {t.name: t.url for t in targets}
        meta["rss_idle_mb"] = {t.name: t.tree.rss_mb() if t.tree.known else None for t in targets}
        # Warm-up: connection pools, key cache, model registry, lazy imports in every worker.
        for target in targets:
            for mode in MODES:
                measure(target, upstream_tree, mode, args.model, 8, 1.0, use_wrk=False)

        print(
            f"measuring C={','.join(map(str, levels))}, {duration:g} s x {args.repeats} per point and mode, "
            f"non-stream client {'wrk' if use_wrk else 'python'}; targets {', '.join(t.name for t in targets)}",
            flush=True,
        )
        points: dict[str, dict[str, Any]] = {}
        for level_index, concurrency in enumerate(levels):
            runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for repeat in range(args.repeats):
                for mode_index, mode in enumerate(MODES):
                    # Rotate which target goes first so slow host drift does not favour one.
                    for target in rotation(targets, level_index + repeat + mode_index):
                        result = measure(
                            target, upstream_tree, mode, args.model, concurrency, duration, use_wrk
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
            point["vs_peers"] = {peer: peer_ratios(point["gateway"], point[peer]) for peer in peers}
            points[f"c{concurrency}"] = point
        report["points"] = points

        open_point: dict[str, Any] | None = None
        if args.rate > 0:
            print(
                f"open loop: {args.rate:g} req/s, {duration:g} s x {args.repeats} per target, "
                f"up to {args.open_connections} connections",
                flush=True,
            )
            open_runs: dict[str, list[dict[str, Any]]] = {}
            for repeat in range(args.repeats):
                for target in rotation(targets, len(levels) + repeat):
                    result = measure(
                        target, upstream_tree, "open_loop", args.model, args.open_connections, duration,
                        use_wrk=False, rate=args.rate,
                    )  # fmt: skip
                    open_runs.setdefault(target.name, []).append(result)
                    print(
                        f"  open {target.name:8} done {result['done_per_s']:7.1f}/s  p50 {result['p50_ms']:8.2f} ms  "
                        f"p99 {result['p99_ms']:8.2f} ms  errors {sum(result['errors'].values())}",
                        flush=True,
                    )
            results = {t.name: median_of(open_runs[t.name]) for t in targets}
            for name, result in results.items():  # counts: the worst repeat's, not a median
                result["waited"] = max(run["waited"] for run in open_runs[name])
                result["unfinished"] = max(run["unfinished"] for run in open_runs[name])
            open_point = {
                "rate": args.rate,
                "duration_s": duration,
                "warmup_s": open_warmup(duration),
                "connections": args.open_connections,
                "targets": results,
                "goal": goal(results),
            }
            report["open_loop"] = open_point

        meta["rss_end_mb"] = {t.name: t.tree.rss_mb() if t.tree.known else None for t in targets}
        print(
            f"\ngateway: {meta['gateway']}; database {meta['database']}, redis {'yes' if meta['redis'] else 'no'}"
        )
        for name, what in meta["peers"].items():
            print(f"peer {name}: {what}")
        print_report(points, [t.name for t in targets], peers)
        if open_point is not None:
            print_open_loop(open_point, [t.name for t in targets])
        if "memory" in report:
            print_memory(report["memory"])
        write_report(args.output, report)
    finally:
        for process in reversed(processes):
            # A supervisor drains its children first (SHUTDOWN_DRAIN_SECONDS at most).
            stop(process, timeout=45)
        for path in TEMP_DIRS:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
