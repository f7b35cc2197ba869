"""The gateway's benchmark: direct-to-upstream vs through the gateway, in one run.

Starts the fast fake upstream and the gateway (uvicorn, 2 workers, a real project key, usage
on), then for each concurrency measures non-stream requests/s and p50/p99 (wrk), streaming
time to first token and streams/s (an asyncio client), and server CPU per request from
/proc, and prints the gateway/direct ratios. Targets alternate within each point so drift on
a shared host hits both alike. Uses DATABASE_URL / REDIS_URL from the environment if set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "hello bench"}]}
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def tree_cpu(pid: int) -> float:
    """utime+stime (seconds) of a process and its children."""
    total = 0.0
    pids = [pid]
    for child in Path("/proc").iterdir():
        if child.name.isdigit():
            try:
                fields = (child / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    pids.append(int(child.name))
            except (OSError, IndexError):
                continue
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
        except OSError:
            continue
    return total


def run_wrk(url: str, key: str, concurrency: int, duration: float) -> dict[str, float]:
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.body = ' + json.dumps(json.dumps(BODY)) + "\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    threads = min(2, concurrency)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def pct(label: str) -> float:
        match = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "requests": total,
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


async def run_streams(url: str, key: str, concurrency: int, duration: float) -> dict[str, float]:
    ttfts: list[float] = []
    done = 0
    errors = 0
    stop_at = time.monotonic() + duration
    body = {**BODY, "stream": True}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency + 4), timeout=30) as client:

        async def worker() -> None:
            nonlocal done, errors
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                first = None
                async with client.stream(
                    "POST", url, json=body, headers={"Authorization": f"Bearer {key}"}
                ) as response:
                    async for line in response.aiter_lines():
                        if first is None and line.startswith("data: {"):
                            first = time.perf_counter() - started
                        if line == "data: [DONE]":
                            break
                if response.status_code == 200 and first is not None:
                    ttfts.append(first * 1000)
                    done += 1
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "streams_per_s": done / duration,
        "ttft_p50_ms": statistics.median(ttfts) if ttfts else float("nan"),
        "streams": done,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--quick", action="store_true", help="2 s per point")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    duration = 2 if args.quick else args.duration
    levels = [int(c) for c in args.concurrency.split(",")]
    if not shutil.which("wrk"):
        sys.exit("wrk is needed for the non-stream load (apt-get install wrk)")

    up_port, gw_port = free_port(), free_port()
    env = dict(
        os.environ,
        JAN_INFERENCE_MODEL_URL=f"http://127.0.0.1:{up_port}",
        GATEWAY_ENV="dev",
        LOG_LEVEL="WARNING",
    )
    if not env.get("DATABASE_URL"):
        env["GATEWAY_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-")
    upstream = subprocess.Popen([PY, str(ROOT / "bench" / "fake_upstream.py"), "--port", str(up_port)])
    gateway = None
    try:
        wait_http(f"http://127.0.0.1:{up_port}/v1/models")
        subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run(
            [
                PY,
                "manage.py",
                "shell",
                "-c",
                "from inference import services; p = services.provider_ensure_default(); services.provider_check(provider_id=p.pk, force=True)",
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )
        key = subprocess.run(
            [PY, "manage.py", "createprojectkey", "--email", "bench@example.com", "--name", "bench"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        gateway = subprocess.Popen(
            [
                str(Path(PY).parent / "uvicorn"),
                "gateway.asgi:application",
                "--port",
                str(gw_port),
                "--workers",
                str(args.workers),
                "--no-access-log",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        wait_http(f"http://127.0.0.1:{gw_port}/healthcheck")
        targets = {
            "direct": (f"http://127.0.0.1:{up_port}/v1/chat/completions", upstream.pid),
            "gateway": (f"http://127.0.0.1:{gw_port}/v1/chat/completions", gateway.pid),
        }
        # Warm up: key cache, registry, connection pools.
        for url, _ in targets.values():
            run_wrk(url, key, 4, 1)
        results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in targets}
        for concurrency in levels:
            for name, (url, pid) in targets.items():
                before = tree_cpu(pid)
                point = run_wrk(url, key, concurrency, duration)
                point["cpu_ms_per_request"] = (tree_cpu(pid) - before) * 1000 / max(point["requests"], 1)
                before = tree_cpu(pid)
                streams = asyncio.run(run_streams(url, key, concurrency, duration))
                streams["cpu_ms_per_stream"] = (tree_cpu(pid) - before) * 1000 / max(streams["streams"], 1)
                results[name][f"c{concurrency}"] = {**point, **streams}
        print_report(results, levels)
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "latest.json").write_text(json.dumps(results, indent=2))
    finally:
        for process in (gateway, upstream):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)


def print_report(results: dict[str, dict[str, dict[str, float]]], levels: list[int]) -> None:
    print(
        f"{'target':8} {'C':>3} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/req':>10} {'streams/s':>10} {'ttft p50':>9} {'cpu ms/stream':>13} {'err':>4}"
    )
    for name, points in results.items():
        for c in levels:
            p = points[f"c{c}"]
            print(
                f"{name:8} {c:>3} {p['rps']:>9.0f} {p['p50_ms']:>8.2f} {p['p99_ms']:>8.2f} {p['cpu_ms_per_request']:>10.2f} "
                f"{p['streams_per_s']:>10.0f} {p['ttft_p50_ms']:>9.2f} {p['cpu_ms_per_stream']:>13.2f} {p['errors'] + p.get('errors', 0):>4.0f}"
            )
    print("\nratios gateway/direct:")
    for c in levels:
        g, d = results["gateway"][f"c{c}"], results["direct"][f"c{c}"]
        print(
            f"  C={c:<3} req/s {g['rps'] / d['rps']:.3f}  streams/s {g['streams_per_s'] / d['streams_per_s']:.3f}  "
            f"added p50 {g['p50_ms'] - d['p50_ms']:+.2f} ms  added ttft {g['ttft_p50_ms'] - d['ttft_p50_ms']:+.2f} ms"
        )


if __name__ == "__main__":
    main()
