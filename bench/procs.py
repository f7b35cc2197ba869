"""Processes for the benchmark: starting and stopping servers, and what /proc says about them.

CPU (utime + stime), RSS and PSS are read from /proc for a server's whole process tree (a
uvicorn parent and its workers, a supervisor and everything under it), re-scanned at every
sample so restarted workers are counted too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def http_call(
    url: str,
    timeout: float = 2.0,
    data: bytes | None = None,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """(status, body) of a GET, or of a POST when `data` is given; (0, reason) when nothing answers."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key:
        sent["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, headers=sent)  # noqa: S310 - http only
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


def parents() -> dict[int, int]:
    """pid -> parent pid of every process, from one scan of /proc."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(int(entry.name))):
            found[int(entry.name)] = int(fields[1])
    return found


def descendants(roots: Iterable[int]) -> set[int]:
    """The roots and all their descendants, from one scan of /proc."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents().items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def rss_kb(pid: int) -> int | None:
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    return None


def pss_kb(pid: int) -> int | None:
    """Proportional set size: each shared page divided by the number of processes mapping it.

    Summed over a tree it counts a page that a forked Celery pool shares with its parent once,
    where RSS counts it in every process that maps it.
    """
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return None


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


@dataclass
class ProcTree:
    """A server's processes (e.g. uvicorn's parent and its workers), re-scanned on every sample."""

    roots: list[int]

    @property
    def known(self) -> bool:
        return bool(self.roots)

    def pids(self) -> set[int]:
        return descendants(self.roots)

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            if fields := _proc_stat(pid):
                # fields[11], fields[12] are utime and stime (stat fields 14 and 15), all threads.
                total += (int(fields[11]) + int(fields[12])) / TICKS
        return total

    def rss_mb(self) -> float:
        return sum(rss_kb(pid) or 0 for pid in self.pids()) / 1024

    def pss_mb(self) -> float:
        return sum(pss_kb(pid) or 0 for pid in self.pids()) / 1024


def procfile_entries(path: Path) -> list[tuple[str, str]]:
    """`name: command` lines of a Procfile, as gateway.supervisor reads them."""
    entries = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries.append((name.strip(), command.strip()))
    return entries


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


def start(
    command: list[str], log_name: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = (RESULTS / log_name).open("wb")
    # Own session: a Ctrl-C reaches only this script, which then stops the servers in order.
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL for the process and whatever it left behind after `timeout`."""
    tree = {pid: cmdline(pid) for pid in descendants([process.pid])} if process.poll() is None else {}
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    # Children that outlived their parent (a worker, a pool process) would hold ports and memory.
    for pid, command in tree.items():
        if pid != process.pid and command and cmdline(pid) == command:  # still that process
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
