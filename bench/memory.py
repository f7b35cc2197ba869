"""The memory of everything `make run` starts: idle after start-up, and optionally under a soak.

Starts `python -m gateway.supervisor Procfile` from the repository root (web: gateway.server
with WEB_CONCURRENCY workers; the Celery worker and its pool; beat), as the Makefile's run
target does: PROMETHEUS_MULTIPROC_DIR an empty directory of its own, PORT a free port, the rest
of the environment the bench's gateway has (its database, Redis, the fake upstream as
JAN_INFERENCE_MODEL_URL). Waits until /healthcheck answers, the Celery worker logged
`ready.` and beat `Starting...`, lets the tree settle, then reads every process's RSS and PSS
from /proc. With a soak, paced load (stream and non-stream in turn) runs for that long and the
tree's RSS and PSS are sampled every SAMPLE_EVERY seconds.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.load import Target, open_loop, percentile, run_async
from bench.procs import (
    PY,
    RESULTS,
    ROOT,
    ProcTree,
    cmdline,
    http_call,
    parents,
    procfile_entries,
    pss_kb,
    rss_kb,
    start,
    stop,
)
from tests.live_server import free_port

SAMPLE_EVERY = 10.0
READY_TIMEOUT_SECONDS = 180
BEAT_GRACE_SECONDS = 30
# The log lines that say the Celery worker and beat are up (Celery's own wording).
WORKER_READY = b" ready."
BEAT_READY = b"beat: Starting..."


def label(pid: int, parent_of: dict[int, int], cache: dict[int, str]) -> str:
    """A short name for a process of the tree, from its command line and its parent's name."""
    if pid in cache:
        return cache[pid]
    text = " ".join(cmdline(pid))
    parent = parent_of.get(pid)
    parent_label = label(parent, parent_of, cache) if parent in parent_of else ""
    if "gateway.supervisor" in text:
        name = "supervisor"
    elif "gateway.server" in text:
        name = "web"
    elif "resource_tracker" in text:
        name = f"{parent_label} resource tracker".strip()
    elif "spawn_main" in text or "multiprocessing-fork" in text:
        name = f"{parent_label} worker".strip()
    elif "celery" in text:
        name = "celery beat" if " beat" in text else "celery worker"
        if parent_label == name:  # a forked pool process has its parent's command line
            name += " pool"
    else:
        name = Path(text.split(" ", 1)[0]).name if text else "?"
    cache[pid] = name
    return name


def snapshot(root: int) -> list[dict[str, Any]]:
    """Every process of the tree: pid, short name, RSS and PSS in MB."""
    parent_of = parents()
    children: dict[int, list[int]] = {}
    for pid, parent in parent_of.items():
        children.setdefault(parent, []).append(pid)
    ordered: list[int] = []
    todo = [root]
    while todo:  # depth first, so a worker is listed under its parent
        pid = todo.pop()
        ordered.append(pid)
        todo.extend(sorted(children.get(pid, []), reverse=True))
    names: dict[int, str] = {}
    rows = []
    for pid in ordered:
        rss, pss = rss_kb(pid), pss_kb(pid)
        if rss is None:
            continue  # gone meanwhile
        rows.append(
            {
                "pid": pid,
                "name": label(pid, parent_of, names),
                "rss_mb": rss / 1024,
                "pss_mb": pss / 1024 if pss is not None else None,
            }
        )
    return rows


def _log_has(log: Path, needle: bytes) -> bool:
    try:
        return needle in log.read_bytes()
    except OSError:
        return False


def start_make_run(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, Path, str, str | None]:
    """The `make run` tree, up and ready: (supervisor, web URL, its log, its metrics dir, a caveat)."""
    port = free_port()
    metrics_dir = tempfile.mkdtemp(prefix="bench-make-run-prometheus-")
    run_env = dict(env, PORT=str(port), PROMETHEUS_MULTIPROC_DIR=metrics_dir)
    # Only localhost: the default HOST of a dev run anyway (settings.HOST), stated for clarity.
    run_env["HOST"] = "127.0.0.1"
    # Server choice and worker count as `make run` has them (settings' defaults or the user's).
    run_env.pop("SERVER", None)
    # As `make run`: static files collected first (whitenoise indexes them at start-up).
    subprocess.run(
        [PY, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"], cwd=ROOT, env=run_env, check=True
    )
    log_name = "make-run.log"
    process = start([PY, "-m", "gateway.supervisor", "Procfile"], log_name, run_env)
    log = RESULTS / log_name
    url = f"http://127.0.0.1:{port}"
    # What to wait for, from the Procfile: a Celery worker, and beat (its own process, or a
    # thread of the worker: `--beat-thread`, `-B`).
    commands = [command for _, command in procfile_entries(ROOT / "Procfile")]
    celery = [command for command in commands if "celery" in command]
    want_worker = any(" worker" in command for command in celery)
    want_beat = any(" beat" in command or "--beat" in command or " -B" in command for command in celery)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    beat_deadline: float | None = None
    waiting: list[str] = []
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway.supervisor exited with code {process.returncode} (see {log})")
        waiting = []
        if http_call(url + "/healthcheck", timeout=1)[0] != 200:
            waiting.append("web /healthcheck")
        if want_worker and not _log_has(log, WORKER_READY):
            waiting.append("celery worker")
        beat_seen = not want_beat or _log_has(log, BEAT_READY)
        if not waiting:
            if beat_seen:
                return process, url, log, metrics_dir, None
            # Beat as a thread may log at a level the worker does not show: give it a while,
            # then go on and say so.
            beat_deadline = beat_deadline or time.monotonic() + BEAT_GRACE_SECONDS
            if time.monotonic() > beat_deadline:
                return process, url, log, metrics_dir, "beat's `Starting...` line never appeared in the log"
        time.sleep(0.5)
    stop(process, timeout=60)
    raise RuntimeError(
        f"`make run` tree not ready in {READY_TIMEOUT_SECONDS} s, waiting for {', '.join(waiting)} (see {log})"
    )


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_name: dict[str, dict[str, float]] = {}
    for row in rows:
        group = by_name.setdefault(row["name"], {"count": 0, "rss_mb": 0.0, "pss_mb": 0.0})
        group["count"] += 1
        group["rss_mb"] += row["rss_mb"]
        group["pss_mb"] += row["pss_mb"] or 0.0
    return {
        "processes": rows,
        "by_name": by_name,
        "count": len(rows),
        "rss_mb": sum(row["rss_mb"] for row in rows),
        "pss_mb": sum(row["pss_mb"] or 0 for row in rows),
    }


async def _soak(
    target: Target, model: str, rate: float, seconds: float, root: int
) -> tuple[Any, list[dict[str, float]]]:
    bodies: list[dict[str, Any]] = [
        {"model": model, "messages": [{"role": "user", "content": "hello soak"}]},
        {
            "model": model,
            "messages": [{"role": "user", "content": "hello soak"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ]
    load = asyncio.ensure_future(open_loop(target, bodies, rate, seconds, connections=64, grace=10))
    began = time.monotonic()
    samples: list[dict[str, float]] = []
    tree = ProcTree([root])
    while not load.done():
        await asyncio.wait([load], timeout=SAMPLE_EVERY)
        if load.done():
            break
        # /proc reads off the event loop, so the sampling does not delay the paced requests.
        rss, pss = await asyncio.gather(asyncio.to_thread(tree.rss_mb), asyncio.to_thread(tree.pss_mb))
        samples.append({"t_s": time.monotonic() - began, "rss_mb": rss, "pss_mb": pss})
    return load.result(), samples


def _slope(minutes: list[float], values: list[float]) -> float | None:
    """Least-squares MB per minute; None with fewer than two samples."""
    if len(values) < 2:
        return None
    return statistics.linear_regression(minutes, values).slope


def soak_summary(sample: Any, samples: list[dict[str, float]], rate: float, seconds: float) -> dict[str, Any]:
    result: dict[str, Any] = {
        "rate": rate,
        "seconds": seconds,
        "mix": "non-stream and stream chat in turn",
        "requests": sample.ok,
        "errors": dict(sample.errors),
        "unfinished": sample.unfinished,
        "p50_ms": percentile(sample.latencies, 0.5) * 1000,
        "p99_ms": percentile(sample.latencies, 0.99) * 1000,
        "samples": samples,
    }
    for metric in ("rss_mb", "pss_mb"):
        values = [s[metric] for s in samples]
        if not values:
            continue
        minutes = [s["t_s"] / 60 for s in samples]
        half = len(values) // 2
        result[metric] = {
            "first": values[0],
            "last": values[-1],
            "max": max(values),
            "slope_mb_per_min": _slope(minutes, values),
            # Past the warm-up (caches and allocator arenas fill first): the leak indicator.
            "slope_second_half_mb_per_min": _slope(minutes[half:], values[half:]),
        }
    return result


def measure_make_run(
    env: dict[str, str], settle: float, soak_seconds: float, soak_rate: float, key: str, model: str
) -> dict[str, Any]:
    """Idle RSS/PSS of the `make run` tree per process, and the soak if asked for."""
    print("memory: starting the `make run` tree (gateway.supervisor Procfile) ...", flush=True)
    began = time.monotonic()
    process, url, log, metrics_dir, caveat = start_make_run(env)
    print(f"memory: web, Celery worker and beat ready after {time.monotonic() - began:.0f} s", flush=True)
    try:
        time.sleep(settle)  # let start-up garbage be collected and the first beat tick pass
        rows = snapshot(process.pid)
        report: dict[str, Any] = {
            "command": ".venv/bin/python -m gateway.supervisor Procfile",
            "procfile": [f"{name}: {command}" for name, command in procfile_entries(ROOT / "Procfile")],
            "settle_s": settle,
            "idle": summarise(rows),
            "caveat": caveat,
        }
        if soak_seconds > 0:
            target = Target("make run", url, ProcTree([process.pid]), key=key)
            # The web workers route `model` once they have loaded the registry.
            ready_body = (
                f'{{"model": "{model}", "messages": [{{"role": "user", "content": "ready?"}}]}}'.encode()
            )
            deadline = time.monotonic() + 60
            while http_call(target.chat_url, timeout=5, data=ready_body, key=key)[0] != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the `make run` web server never answered a chat completion (see {log})"
                    )
                time.sleep(0.5)
            print(f"memory: soak, {soak_rate:g} req/s for {soak_seconds:g} s ...", flush=True)
            sample, samples = run_async(_soak(target, model, soak_rate, soak_seconds, process.pid))
            report["soak"] = soak_summary(sample, samples, soak_rate, soak_seconds)
            report["after_soak"] = summarise(snapshot(process.pid))
        return report
    finally:
        # The supervisor drains (SHUTDOWN_DRAIN_SECONDS) and stops its children; beyond that, kill.
        stop(process, timeout=float(env.get("SHUTDOWN_DRAIN_SECONDS", "30")) + 20)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def print_memory(report: dict[str, Any]) -> None:
    idle = report["idle"]
    print(
        f"\nmemory of the `make run` tree ({report['command']}), idle {report['settle_s']:g} s after ready:"
    )
    print(f"  {'process':28} {'pid':>7} {'rss MB':>8} {'pss MB':>8}")
    for row in idle["processes"]:
        pss = "-" if row["pss_mb"] is None else f"{row['pss_mb']:.1f}"
        print(f"  {row['name']:28} {row['pid']:>7} {row['rss_mb']:8.1f} {pss:>8}")
    print(
        f"  {'total (' + str(idle['count']) + ' processes)':28} {'':>7} {idle['rss_mb']:8.1f} {idle['pss_mb']:8.1f}"
    )
    if report.get("caveat"):
        print(f"  note: {report['caveat']}")
    soak = report.get("soak")
    if not soak:
        return
    errors = sum(soak["errors"].values())
    print(
        f"soak: {soak['rate']:g} req/s for {soak['seconds']:g} s ({soak['mix']}): {soak['requests']} ok, "
        f"{errors} errors, {soak['unfinished']} unfinished, p50 {soak['p50_ms']:.1f} ms, p99 {soak['p99_ms']:.1f} ms"
    )
    for metric, name in (("rss_mb", "RSS"), ("pss_mb", "PSS")):
        if metric in soak:
            m = soak[metric]
            slope, second = (
                "-" if value is None else f"{value:+.2f}"
                for value in (m["slope_mb_per_min"], m["slope_second_half_mb_per_min"])
            )
            print(
                f"  tree {name} every {SAMPLE_EVERY:g} s: first {m['first']:.1f}  last {m['last']:.1f}  "
                f"max {m['max']:.1f} MB  slope {slope} MB/min (second half {second})"
            )
    if errors:
        print(f"  soak errors: {soak['errors']}")
