"""gateway.supervisor's restart policy, in process, with short real child processes."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from gateway import supervisor
from gateway.supervisor import Child, Supervisor, read_procfile

pytestmark = pytest.mark.slow


def test_read_procfile_skips_blanks_and_comments(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("# the processes\nweb: run web --port ${PORT:-8080}\n\nworker:  run worker\n")
    assert read_procfile(procfile) == [("web", "run web --port ${PORT:-8080}"), ("worker", "run worker")]
    procfile.write_text("just a command\n")
    with pytest.raises(ValueError, match="name: command"):
        read_procfile(procfile)


def test_a_process_that_never_starts_stops_everything_with_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(supervisor, "RESTART_DELAYS", (0.01,) * 5)
    steady = Child("steady", "sleep 600")
    broken = Child("broken", "exit 3")
    assert Supervisor(children=[steady, broken], stop_timeout=5).run() == 1
    log = capsys.readouterr().err
    assert log.count("broken started") == supervisor.GIVE_UP_AFTER
    assert log.count("steady started") == 1  # never touched while the other one failed
    assert "broken failed 6 times in a row at start; stopping everything" in log
    assert steady.process is not None
    assert steady.process.returncode == -signal.SIGTERM


def test_a_crash_restarts_only_that_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "runs"
    # Crashes on its first run, then stays up.
    script = f"echo run >> {marker}; [ $(wc -l < {marker}) -ge 2 ] && exec sleep 600 || exit 1"
    flaky = Child("flaky", f"sh -c '{script}'")  # one command per line: the supervisor execs it
    steady = Child("steady", "sleep 600")
    tree = Supervisor(children=[steady, flaky], stop_timeout=5)

    def stop_when_restarted() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if marker.exists() and len(marker.read_text().splitlines()) >= 2 and flaky.running:
                break
            time.sleep(0.05)
        tree.request_stop(signal.SIGTERM)

    watcher = threading.Thread(target=stop_when_restarted)
    watcher.start()
    assert tree.run() == 0
    watcher.join()
    log = capsys.readouterr().err
    assert "flaky exited with status 1" in log
    assert log.count("flaky started") == 2
    assert log.count("steady started") == 1
    assert "SIGTERM: stopping" in log


@pytest.mark.django_db
def test_the_ready_banner_points_at_the_docs_and_says_when_no_model_server_is_configured(
    settings: pytest.FixtureRequest,
) -> None:
    from inference.models import Provider

    settings.JAN_INFERENCE_MODEL_URL = ""  # type: ignore[attr-defined]
    Provider.objects.all().delete()
    assert not supervisor.provider_configured()
    banner = supervisor.ready_banner("http://127.0.0.1:8080", model_server_configured=False)
    for line in (
        "http://127.0.0.1:8080/api/swagger",
        "http://127.0.0.1:8080/api/docs",
        "http://127.0.0.1:8080/admin",
        "manage.py createprojectkey --email",
        "No model server is configured",
        "JAN_INFERENCE_MODEL_URL",
    ):
        assert line in banner
    settings.JAN_INFERENCE_MODEL_URL = "http://127.0.0.1:9/v1"  # type: ignore[attr-defined]
    assert supervisor.provider_configured()
    assert "No model server" not in supervisor.ready_banner("http://127.0.0.1:8080", True)


def _slow_to_stop(tmp_path: Path) -> Child:
    """A child that takes about a second to finish after SIGTERM (a drain in miniature)."""
    ready = tmp_path / "ready"
    script = f"trap 'sleep 1; exit 0' TERM; touch {ready}; while true; do sleep 0.05; done"
    return Child("draining", f'sh -c "{script}"')


def _stop_when_ready(tree: Supervisor, tmp_path: Path, gap: float) -> threading.Thread:
    def stop() -> None:
        deadline = time.monotonic() + 10
        while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        tree.request_stop(signal.SIGTERM)
        time.sleep(gap)
        tree.request_stop(signal.SIGTERM)

    watcher = threading.Thread(target=stop)
    watcher.start()
    return watcher


def test_one_signal_delivered_twice_still_drains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # SIGTERM to the process group reaches the supervisor directly and again through `make`.
    child = _slow_to_stop(tmp_path)
    tree = Supervisor(children=[child], stop_timeout=10)
    watcher = _stop_when_ready(tree, tmp_path, gap=0.01)
    assert tree.run() == 0
    watcher.join()
    assert child.process is not None
    assert child.process.returncode == 0  # finished its drain, was not killed
    assert "second signal" not in capsys.readouterr().err


def test_a_later_second_signal_stops_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    child = Child("stubborn", "sh -c \"trap '' TERM; touch " + str(tmp_path / "ready") + '; sleep 600"')
    tree = Supervisor(children=[child], stop_timeout=60)
    watcher = _stop_when_ready(tree, tmp_path, gap=supervisor.REPEATED_SIGNAL_SECONDS + 0.2)
    started = time.monotonic()
    assert tree.run() == 1
    watcher.join()
    assert time.monotonic() - started < 10  # not the 60 s drain
    assert "killing stubborn: second signal" in capsys.readouterr().err
