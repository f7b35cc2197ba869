"""Profiling: one request on demand (off by default, owners and operators only when enabled) and
continuous profiles pushed to a (fake) Pyroscope server."""

from __future__ import annotations

import gzip
import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from django.conf import settings as django_settings

from accounts.services import token_pair_issue
from gateway import profiling
from organizations.models import ApiKey, OrganizationMember
from organizations.tests.factories import make_api_key, make_org, make_project, make_user
from tests.live_server import GatewayProcess

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def people() -> dict[str, str]:
    owner, reader, staff = make_user(), make_user(), make_user()
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    org = make_org(owner=owner)
    OrganizationMember.objects.create(organization=org, user=reader, role="reader")
    project = make_project(org=org, owner=reader)
    _, admin = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=owner)
    _, owners_key = make_api_key(project=project, user=owner)
    _, readers_key = make_api_key(project=project, user=reader)
    return {
        "admin": admin,
        "owners_key": owners_key,
        "readers_key": readers_key,
        "reader": token_pair_issue(user=reader).access,
        "staff": token_pair_issue(user=staff).access,
    }


def get(server: GatewayProcess, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{server.url}{path}", headers=headers, timeout=30)


@pytest.fixture
def server_without_setting() -> Iterator[GatewayProcess]:
    server = GatewayProcess(database=True, workers=1, env={"PROFILING_ENABLED": ""}).start()
    yield server
    server.stop()


@pytest.fixture
def server_with_profiling() -> Iterator[GatewayProcess]:
    server = GatewayProcess(database=True, workers=1, env={"PROFILING_ENABLED": "true"}).start()
    yield server
    server.stop()


def test_off_by_default(server_without_setting: GatewayProcess, people: dict[str, str]) -> None:
    from gateway.asgi import application

    assert not isinstance(application, profiling.OnDemandProfiler)
    answer = get(server_without_setting, "/v1/organization?profile=1", people["admin"])
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["object"] == "list"  # the answer itself, not a profile
    assert "x-profiled-status" not in answer.headers


def test_on_when_enabled_for_owners_and_operators(
    server_with_profiling: GatewayProcess, people: dict[str, str]
) -> None:
    server = server_with_profiling
    html = get(server, "/v1/organization?profile=1", people["admin"])
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert html.headers["x-profiled-status"] == "200"
    assert html.headers["x-request-id"]
    assert "pyinstrument" in html.text.lower()

    speedscope = orjson.loads(get(server, "/v1/version?profile=speedscope", people["staff"]).content)
    assert speedscope["$schema"].startswith("https://www.speedscope.app/")

    # the hot path too, with an organization owner's project key; its status travels along
    text = get(server, "/v1/models/no-such-model?profile=text", people["owners_key"])
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain")
    assert text.headers["x-profiled-status"] == "404"
    assert "model_retrieve" in text.text

    for token in (people["reader"], people["readers_key"], None, "sk-project_" + "x" * 40):
        refused = get(server, "/v1/organization?profile=1", token)
        assert refused.status_code == 403, token
        assert refused.json()["error"]["code"] == "profiling_not_allowed"
    # without the parameter nothing changes
    assert get(server, "/v1/organization", people["reader"]).json()["object"] == "list"


# --- Continuous profiling ------------------------------------------------------------------------


class _Pyroscope(http.server.ThreadingHTTPServer):
    """A fake Pyroscope: keeps every push (path, lower-cased headers, body)."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, dict[str, str], bytes]] = []
        pushes = self.pushes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                pushes.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def pyroscope() -> Iterator[_Pyroscope]:
    server = _Pyroscope()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_continuous_profiling_is_off_without_an_address(settings: Any) -> None:
    settings.PYROSCOPE_SERVER_ADDRESS = ""
    assert profiling.start_continuous("web") is False


_BUSY_PROCESS = """
import time, django
django.setup()
from gateway.profiling import start_continuous, stop_continuous
assert start_continuous("web")
deadline = time.time() + 3
while time.time() < deadline:
    sum(range(1000))
stop_continuous()
"""


def test_continuous_profiles_reach_pyroscope(pyroscope: _Pyroscope) -> None:
    address = f"http://127.0.0.1:{pyroscope.server_address[1]}"
    env = {
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "GATEWAY_ENV": "test",
        "PATH": "/usr/bin:/bin",
        "PYROSCOPE_SERVER_ADDRESS": address,
        "PYROSCOPE_UPLOAD_INTERVAL_SECONDS": "1",
        "PYROSCOPE_AUTH_TOKEN": "pyroscope-token",
        "PYROSCOPE_APPLICATION_NAME": "jan-gateway-under-test",
    }
    done = subprocess.run(
        [sys.executable, "-c", _BUSY_PROCESS],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert pyroscope.pushes, "no profile was pushed"
    path, headers, body = pyroscope.pushes[0]
    assert path == "/push.v1.PusherService/Push"
    assert headers["authorization"] == "Bearer pyroscope-token"
    payload = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
    assert b"jan-gateway-under-test" in payload
    assert b"web" in payload  # the process tag


def test_celery_worker_processes_push_profiles(pyroscope: _Pyroscope) -> None:
    if not django_settings.REDIS_URL:
        pytest.skip("the worker needs a broker it can reach from another process (.ci/run has Redis)")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYROSCOPE_")},
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "GATEWAY_ENV": "test",
        "REDIS_URL": django_settings.REDIS_URL,
        "PYROSCOPE_SERVER_ADDRESS": f"http://127.0.0.1:{pyroscope.server_address[1]}",
        "PYROSCOPE_UPLOAD_INTERVAL_SECONDS": "1",
    }
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "gateway", "worker", "--pool", "prefork"),
            *("--concurrency", "1", "-Q", "ops-profiling-test", "--without-heartbeat", "--without-gossip"),
            *("--without-mingle", "--loglevel", "WARNING"),
        ],
        cwd=django_settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    from celery import signature

    from gateway.celery import app

    # An idle worker has no CPU samples to send: give it work (Celery's own built-in tasks).
    busy = [dict(signature("celery.accumulate")), list(range(100_000))]
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not any(
            b"celery-worker" in gzip.decompress(body) for _, _, body in list(pyroscope.pushes)
        ):
            assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
            app.send_task("celery.map", args=busy, queue="ops-profiling-test")
            time.sleep(1)
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        from gateway.redis import sync_client

        client = sync_client()
        if client is not None:
            client.delete("ops-profiling-test")  # work the worker did not get to
    assert any(b"celery-worker" in gzip.decompress(body) for _, _, body in pyroscope.pushes)
