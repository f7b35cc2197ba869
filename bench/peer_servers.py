"""Other gateways measured in the same run: `bench/run.py --peers litellm,portkey`.

Each peer proxies to the same fake upstream and becomes one more target: the same load
generators, the same CPU-from-/proc accounting over its process tree, the same rotation of
who goes first. The pins live in bench/peers/; the installs in bench/.peers/ (git-ignored),
reinstalled only when a pin file changes, so the network is needed once.

- litellm: the LiteLLM proxy (`litellm[proxy]`, pinned with its whole tree in
  bench/peers/litellm/requirements.txt) in its own venv, started as `litellm --config ...
  --num_workers 2` (uvicorn, two worker processes, like the gateway), with no database: one
  model `bench-model` -> `openai/bench-model` at the fake, and a master key.
- portkey: `@portkey-ai/gateway` from npm (bench/peers/portkey/package-lock.json), one node
  process (`--headless`: the API without the console UI). It has no model list of its own:
  each request names the provider and the upstream in `x-portkey-provider` and
  `x-portkey-custom-host`, as its docs show for an OpenAI-compatible server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.load import Target
from bench.procs import PY, ROOT, ProcTree, http_call, start, stop
from tests.live_server import free_port

PINS = ROOT / "bench" / "peers"
INSTALLS = ROOT / "bench" / ".peers"
PEERS = ("litellm", "portkey")
LITELLM_KEY = "sk-bench-litellm"
# LiteLLM's workers import for a long time on a busy 2-core machine; uvicorn's default worker
# health check (5 s) killed them during start-up in a loop.
LITELLM_WORKER_HEALTHCHECK_SECONDS = 180
START_TIMEOUT_SECONDS = 240
# Only what a process needs to run: no DATABASE_URL, REDIS_URL or PROMETHEUS_MULTIPROC_DIR of
# the gateway's leaks into a peer (LiteLLM would try to use that database and Redis).
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS")


class PeerUnavailable(Exception):
    """The peer could not be installed or started; the run goes on without it."""


def _digest(*paths: Path) -> str:
    hasher = hashlib.sha256()
    for path in paths:
        hasher.update(path.read_bytes())
    return hasher.hexdigest()


def _run(command: list[str], what: str, cwd: Path = ROOT, timeout: float = 900) -> None:
    try:
        result = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PeerUnavailable(f"{what}: {error}") from error
    if result.returncode != 0:
        raise PeerUnavailable(f"{what} failed (exit {result.returncode}): {result.stderr.strip()[-1500:]}")


def _base_env(**extra: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env.update(extra)
    return env


# --- installs -------------------------------------------------------------------------------


def install_litellm() -> Path:
    """The venv's `litellm` script, installed from the pins if they changed."""
    venv = INSTALLS / "litellm"
    requirements = PINS / "litellm" / "requirements.txt"
    stamp = venv / ".installed"
    script = venv / "bin" / "litellm"
    digest = _digest(requirements)
    if stamp.exists() and stamp.read_text() == digest and script.exists():
        return script
    print(
        "installing the LiteLLM proxy into bench/.peers/litellm (the first time takes a minute) ...",
        flush=True,
    )
    uv = Path(PY).parent / "uv"
    if uv.exists():
        _run([str(uv), "venv", "--quiet", "--allow-existing", "--python", PY, str(venv)], "uv venv")
        _run(
            [
                str(uv),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(venv / "bin" / "python"),
                "-r",
                str(requirements),
            ],
            "installing litellm",
        )
    else:
        _run([PY, "-m", "venv", str(venv)], "python -m venv")
        _run([str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(requirements)], "installing litellm")
    if not script.exists():
        raise PeerUnavailable(f"the install has no {script}")
    stamp.write_text(digest)
    return script


def install_portkey() -> Path:
    """Portkey's start script, installed with `npm ci` from the lock file if the pins changed."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise PeerUnavailable("node and npm are not installed (apt-get install -y nodejs npm)")
    folder = INSTALLS / "portkey"
    sources = [PINS / "portkey" / "package.json", PINS / "portkey" / "package-lock.json"]
    stamp = folder / ".installed"
    script = folder / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    digest = _digest(*sources)
    if stamp.exists() and stamp.read_text() == digest and script.exists():
        return script
    print("installing Portkey into bench/.peers/portkey ...", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    for source in sources:
        shutil.copyfile(source, folder / source.name)
    # --prefer-offline: npm's cache serves a reinstall without the network.
    _run(
        ["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], "npm ci", cwd=folder
    )
    if not script.exists():
        raise PeerUnavailable(f"the install has no {script}")
    stamp.write_text(digest)
    return script


# --- start ----------------------------------------------------------------------------------


def _wait_chat(target: Target, model: str, process: subprocess.Popen[bytes], log: str) -> None:
    """Until a chat completion through the peer answers 200; a peer that never does is stopped."""
    try:
        _wait_chat_answer(target, model, process, log)
    except PeerUnavailable:
        stop(process)
        raise


def _wait_chat_answer(target: Target, model: str, process: subprocess.Popen[bytes], log: str) -> None:
    body = f'{{"model": "{model}", "messages": [{{"role": "user", "content": "ready?"}}]}}'.encode()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    status, text = 0, ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PeerUnavailable(f"exited with code {process.returncode} (see bench/results/{log})")
        status, text = http_call(
            target.chat_url, timeout=5, data=body, key=target.key, headers=target.headers
        )
        if status == 200:
            return
        time.sleep(1)
    raise PeerUnavailable(
        f"no 200 from a chat completion in {START_TIMEOUT_SECONDS} s; last {status}: {text[:300]}"
    )


def start_litellm(upstream_url: str, model: str, workers: int) -> tuple[Target, subprocess.Popen[bytes]]:
    script = install_litellm()
    config = INSTALLS / "litellm" / "bench-config.yaml"
    config.write_text(
        "# Written by bench/peer_servers.py at each run.\n"
        "model_list:\n"
        f"  - model_name: {model}\n"
        "    litellm_params:\n"
        f"      model: openai/{model}\n"
        f"      api_base: {upstream_url}/v1\n"
        "      api_key: bench\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    port = free_port()
    # The model cost map from the package, not fetched from the internet at start-up.
    env = _base_env(LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONUNBUFFERED="1")
    process = start(
        [
            str(script), "--config", str(config),
            "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", str(workers),
            "--timeout_worker_healthcheck", str(LITELLM_WORKER_HEALTHCHECK_SECONDS),
        ],
        "litellm.log",
        env,
    )  # fmt: skip
    target = Target(
        "litellm",
        f"http://127.0.0.1:{port}",
        ProcTree([process.pid]),
        key=LITELLM_KEY,
        note=f"LiteLLM proxy {_version_of('litellm')}, {workers} uvicorn workers, no database",
    )
    _wait_chat(target, model, process, "litellm.log")
    return target, process


def start_portkey(upstream_url: str, model: str) -> tuple[Target, subprocess.Popen[bytes]]:
    script = install_portkey()
    port = free_port()
    process = start(
        ["node", str(script), f"--port={port}", "--headless"],
        "portkey.log",
        _base_env(NODE_ENV="production"),
        cwd=INSTALLS / "portkey",
    )
    target = Target(
        "portkey",
        f"http://127.0.0.1:{port}",
        ProcTree([process.pid]),
        key="bench",
        headers={"x-portkey-provider": "openai", "x-portkey-custom-host": f"{upstream_url}/v1"},
        note=f"Portkey gateway {_version_of('portkey')}, one node process",
    )
    _wait_chat(target, model, process, "portkey.log")
    return target, process


def _version_of(peer: str) -> str:
    """The installed version, from the pins (what was installed from them)."""
    if peer == "litellm":
        for line in (PINS / "litellm" / "requirements.txt").read_text().splitlines():
            if line.startswith("litellm=="):
                return line.split("==", 1)[1].strip()
    else:
        return str(
            json.loads((PINS / "portkey" / "package.json").read_text())["dependencies"]["@portkey-ai/gateway"]
        )
    return "?"


def start_peer(
    name: str, upstream_url: str, model: str, workers: int
) -> tuple[Target, subprocess.Popen[bytes]]:
    if name == "litellm":
        return start_litellm(upstream_url, model, workers)
    if name == "portkey":
        return start_portkey(upstream_url, model)
    raise PeerUnavailable(f"unknown peer {name!r} (known: {', '.join(PEERS)})")
