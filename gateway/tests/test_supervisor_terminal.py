"""Ctrl-C in a terminal stops `make run`'s supervisor quietly, and `make` exits 0, not 130."""

from __future__ import annotations

import os
import pty
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.slow


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        try:
            seen += os.read(fd, 65536)
        except OSError:  # the terminal closed: everything on it has exited
            break
    return seen


def test_ctrl_c_in_the_terminal_stops_all_and_make_exits_0(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    # Two children that would report a signal they got straight from the terminal.
    child = f"{sys.executable} -c \"import signal,time; signal.signal(signal.SIGINT, lambda *a: print('child got SIGINT', flush=True)); time.sleep(600)\""
    procfile.write_text(f"one: {child}\ntwo: {child}\n")
    makefile = tmp_path / "Makefile"
    makefile.write_text(
        f"run:\n\tcd {settings.BASE_DIR} && {sys.executable} -m gateway.supervisor {procfile}\n"
    )
    env = {**os.environ, "GATEWAY_ENV": "test", "GATEWAY_DATA_DIR": str(tmp_path)}
    pid, terminal = pty.fork()
    if pid == 0:  # the child: make, in the foreground of a fresh terminal, as a person runs it
        argv = ["make", "--no-print-directory", "-f", str(makefile), "run"]
        os.execvpe("make", argv, env)  # noqa: S606 -- make from PATH, as a person runs it
    try:
        started = _read_until(terminal, b"two started", 30)
        assert b"two started" in started, started
        os.write(terminal, b"\x03")  # Ctrl-C
        output = started + _read_until(terminal, b"\xff", 30)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(terminal)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "SIGINT: stopping" in text
    assert "supervisor: stopped" in text
    assert "child got SIGINT" not in text  # only the supervisor heard the terminal
    assert "Interrupt" not in text  # make had nothing to report
    assert "Error" not in text
