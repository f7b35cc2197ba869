"""`python -m gateway.supervisor [Procfile]`: what `make run` runs in the foreground.

Starts every process of the Procfile (web, Celery worker, beat; one command per line, run with
`exec` so that signals reach the program itself), restarts one that exits on
its own (with a growing pause, so a process that cannot start does not spin) while the others
keep serving, and on Ctrl-C or SIGTERM stops them all once: one SIGTERM each, then up to
SHUTDOWN_DRAIN_SECONDS (plus a margin) for the web server's drain and the worker's warm
shutdown, SIGKILL for what is left, exit status 0.

Why not honcho: it stops everything when one process dies, and it passes the terminal's Ctrl-C
to every child besides its own SIGTERM, so Celery logged errors on its second signal. Why not
supervisord or circus: they stay in the foreground well enough, but neither can keep `make`
out of Ctrl-C (make then reports "Interrupt" and exits 130 whatever its recipe does), nor say
when the gateway is ready to use; the whole job fits in this module.

Each child runs in its own session, so only this process hears the terminal. When the
terminal is ours, this process also becomes its foreground group for as long as it runs, so a
Ctrl-C reaches it alone and `make` exits with its status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A process that lived at least this long had started fine: its next crash restarts it at once.
STARTED_FINE_SECONDS = 30.0
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
# A process that failed this many times in a row soon after starting will not start (a port in
# use, a broken setting): everything stops, and the last failure's output says why.
GIVE_UP_AFTER = 6
# A second Ctrl-C or SIGTERM at least this long after the first kills at once, without the drain.
REPEATED_SIGNAL_SECONDS = 1.0
# Beyond the drain: Celery's warm shutdown and interpreter exit.
STOP_MARGIN_SECONDS = 10.0


def log(message: str) -> None:
    print(f"supervisor: {message}", file=sys.stderr, flush=True)


def read_procfile(path: Path) -> list[tuple[str, str]]:
    """`name: command` lines; blank lines and # comments skipped."""
    entries: list[tuple[str, str]] = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        if not command.strip():
            raise ValueError(f"{path}: not a `name: command` line: {line!r}")
        entries.append((name.strip(), command.strip()))
    return entries


@dataclass
class Child:
    name: str
    command: str
    env: dict[str, str] | None = None  # on top of ours
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0  # consecutive exits soon after starting
    restart_at: float | None = None

    def start(self) -> None:
        # `exec` so the signal goes to the program itself, not to a shell waiting for it.
        self.process = subprocess.Popen(  # noqa: S603 -- the commands are the project's own Procfile
            ["/bin/sh", "-c", f"exec {self.command}"],
            start_new_session=True,
            env={**os.environ, **self.env} if self.env else None,
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        log(f"{self.name} started (pid {self.process.pid})")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.process is not None  # noqa: S101 -- running implies a process
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)

    def kill_group(self) -> None:
        """SIGKILL the child and whatever it started (its session's process group)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class Supervisor:
    children: list[Child]
    stop_timeout: float
    ready_url: str | None = None
    stopping: bool = False
    forced: bool = False
    stop_requested_at: float = 0.0
    announced: bool = False
    gave_up: bool = False
    _signals: list[int] = field(default_factory=list)

    def request_stop(self, signum: int, _frame: Any = None) -> None:
        self._signals.append(signum)

    def run(self) -> int:
        for child in self.children:
            child.start()
        while True:
            self._handle_signals()
            if self.stopping:
                return self._stop()
            self._reap_and_restart()
            self._announce_when_ready()
            time.sleep(0.2)

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if self.stopping:
                # A signal sent to the whole process group reaches us twice within milliseconds
                # (directly, and forwarded by `make`): only a later one means "stop now".
                if time.monotonic() - self.stop_requested_at >= REPEATED_SIGNAL_SECONDS:
                    self.forced = True
            else:
                log(f"{signal.Signals(signum).name}: stopping (drain up to {self.stop_timeout:.0f} s)")
                self.stopping = True
                self.stop_requested_at = time.monotonic()

    def _reap_and_restart(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.process is None:
                continue
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.start()
                continue
            status = child.process.poll()
            if status is None:
                continue
            child.kill_group()  # a web worker or pool process left behind would hold the port or a task
            lived = now - child.started_at
            child.failures = 0 if lived >= STARTED_FINE_SECONDS else child.failures + 1
            if child.failures >= GIVE_UP_AFTER:
                log(f"{child.name} failed {child.failures} times in a row at start; stopping everything")
                self.stopping = self.gave_up = True
                return
            delay = (
                0.0 if child.failures == 0 else RESTART_DELAYS[min(child.failures, len(RESTART_DELAYS)) - 1]
            )
            log(f"{child.name} exited with status {status} after {lived:.0f} s; restarting in {delay:.0f} s")
            child.restart_at = now + delay

    def _stop(self) -> int:
        for child in self.children:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while any(child.running for child in self.children):
            self._handle_signals()
            if self.forced or time.monotonic() >= deadline:
                left = [child.name for child in self.children if child.running]
                log(f"killing {', '.join(left)}: {'second signal' if self.forced else 'drain time is over'}")
                break
            time.sleep(0.1)
        for child in self.children:
            child.kill_group()  # the leaders are gone; this reaches any orphaned pool process
            if child.process is not None:
                child.process.wait()
        log("stopped")
        return 1 if self.forced or self.gave_up else 0

    def _announce_when_ready(self) -> None:
        if self.announced or self.ready_url is None:
            return
        try:
            with urllib.request.urlopen(self.ready_url + "/healthcheck", timeout=1) as answer:  # noqa: S310
                ready = answer.status == 200
        except OSError:
            return
        if ready:
            self.announced = True
            print(ready_banner(self.ready_url, _provider_configured_in_child()), flush=True)


def ready_banner(url: str, model_server_configured: bool) -> str:
    lines = [
        "",
        f"  The gateway is up on {url}",
        f"    Swagger UI   {url}/api/swagger",
        f"    ReDoc        {url}/api/docs",
        f"    Admin        {url}/admin",
        "  Next: a project key for inference:",
        "    .venv/bin/python manage.py createprojectkey --email you@example.com",
    ]
    if not model_server_configured:
        lines += [
            "  No model server is configured, so /v1/models is empty and chat calls find no model.",
            "  Set JAN_INFERENCE_MODEL_URL (e.g. http://127.0.0.1:8000/v1 for a local vLLM or",
            "  llama.cpp server) and restart, or register one: POST /v1/organization/models/providers.",
        ]
    return "\n".join([*lines, ""])


def _provider_configured_in_child() -> bool:
    """provider_configured() in a short-lived child: loading Django's apps here would keep about
    90 MB in this process for as long as the gateway runs, for one question asked once."""
    try:
        answer = subprocess.run(  # noqa: S603 -- our own interpreter and module
            [sys.executable, "-m", "gateway.supervisor", PROVIDER_CHECK_FLAG],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return True  # cannot tell: say nothing rather than guess
    return answer.returncode != 1


PROVIDER_CHECK_FLAG = "--provider-configured"


def provider_configured() -> bool:
    """JAN_INFERENCE_MODEL_URL is set, or a provider is registered in the database."""
    import django
    from django.conf import settings

    if settings.JAN_INFERENCE_MODEL_URL:
        return True
    django.setup()
    from django.apps import apps
    from django.db import connections

    # Through Django's app registry: the gateway sits below the apps and imports none of them.
    provider_model = apps.get_model("inference", "Provider")
    try:
        return bool(provider_model.objects.exists())
    except Exception:  # a database that is not reachable here: say nothing rather than guess
        return True
    finally:
        connections.close_all()  # the supervisor keeps no connection for its lifetime


def replicas(name: str, command: str, web_concurrency: int, server: str) -> list[Child]:
    """The web entry as WEB_CONCURRENCY single-process servers sharing the port (SO_REUSEPORT),
    `web.1`, `web.2`, ...; every other entry once.

    Instead of one uvicorn whose parent process spawns the workers: that parent and the
    resource tracker multiprocessing starts beside it cost about 55 MB at rest for nothing
    this supervisor does not already do (restart a worker that dies, pass SIGTERM on for the
    drain). daphne cannot share a port, so under SERVER=daphne the web entry stays one process.
    """
    if name != "web" or web_concurrency <= 1 or server != "uvicorn":
        return [Child(name, command)]
    single = {"WEB_CONCURRENCY": "1", "SERVER_REUSE_PORT": "true"}
    return [Child(f"web.{n}", command, env=single) for n in range(1, web_concurrency + 1)]


@contextlib.contextmanager
def terminal_foreground() -> Iterator[None]:
    """Make our process group the terminal's foreground group while we run, if we have one.

    A Ctrl-C goes to the terminal's foreground process group: without this it reaches `make`
    too, which then reports "Interrupt" and exits 130 however cleanly we stop.
    """
    try:
        terminal = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        yield
        return
    previous_group: int | None = None
    try:
        if os.tcgetpgrp(terminal) != os.getpgrp():
            raise OSError("started in the background: the terminal is not ours to take")
        previous_group = os.getpgrp()
        os.setpgid(0, 0)
        # A background group changing the foreground group is stopped by SIGTTOU unless ignored.
        old_ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(terminal, os.getpgrp())
        finally:
            signal.signal(signal.SIGTTOU, old_ttou)
    except OSError:
        previous_group = None  # not our terminal to manage (no job control): leave it as it is
    try:
        yield
    finally:
        if previous_group is not None:
            old_ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                with contextlib.suppress(OSError):
                    os.tcsetpgrp(terminal, previous_group)
            finally:
                signal.signal(signal.SIGTTOU, old_ttou)
        os.close(terminal)


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    from django.conf import settings

    if argv == [PROVIDER_CHECK_FLAG]:
        return 0 if provider_configured() else 1

    procfile = Path(argv[0]) if argv else Path(settings.BASE_DIR) / "Procfile"
    children = [
        child
        for name, command in read_procfile(procfile)
        for child in replicas(name, command, settings.WEB_CONCURRENCY, settings.SERVER)
    ]
    host = settings.HOST if settings.HOST not in ("0.0.0.0", "::", "") else "127.0.0.1"  # noqa: S104
    host = f"[{host}]" if ":" in host else host
    has_web = any(child.name.split(".")[0] == "web" for child in children)
    supervisor = Supervisor(
        children=children,
        stop_timeout=settings.SHUTDOWN_DRAIN_SECONDS + STOP_MARGIN_SECONDS,
        ready_url=f"http://{host}:{settings.PORT}" if has_web else None,
    )
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    with terminal_foreground():
        return supervisor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
