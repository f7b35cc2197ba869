"""The gateway as a new user starts it: a real uvicorn process on the embedded default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Only what a shell on a fresh machine has: no database, no Redis, no secrets."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env.update(GATEWAY_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.fixture(scope="module")
def embedded_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp_path = tmp_path_factory.mktemp("embedded")
    env = _bare_env(tmp_path)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    port = free_port()
    log_path = tmp_path / "web.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "gateway.asgi:application",
                "--port",
                str(port),
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/healthcheck", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base, log_path
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_boots_on_embedded_default_and_answers_healthcheck(embedded_gateway: tuple[str, Path]) -> None:
    base, _ = embedded_gateway
    response = httpx.get(f"{base}/healthcheck")
    assert response.status_code == 200
    assert response.json() == "ok"
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "not configured"}


def test_log_line_has_request_id_and_no_secrets(embedded_gateway: tuple[str, Path]) -> None:
    base, log_path = embedded_gateway
    secrets = {
        "key": "sk-project_0123456789abcdefghijklmnopqrstuv",
        "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl",
        "password": "correct-horse-battery-staple",
    }
    response = httpx.post(
        f"{base}/v1/version?api_key={secrets['key']}",
        headers={
            "Authorization": f"Bearer {secrets['key']}",
            "Cookie": f"jan_refresh_token={secrets['jwt']}",
            "X-Request-ID": "boot-test-request-1",
        },
        json={"password": secrets["password"]},
    )
    assert response.status_code == 405
    assert response.headers["X-Request-ID"] == "boot-test-request-1"
    # The server writes the access line after answering: wait for it rather than for a while.
    assert wait_until(lambda: "boot-test-request-1" in log_path.read_text(), 10)
    text = log_path.read_text()
    for secret in secrets.values():
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line.get("request_id") == "boot-test-request-1"]
    assert line["status"] == 405
    assert line["method"] == "POST"
    assert line["path"] == "/v1/version"


def test_redaction_filter_scrubs_secrets_logged_by_code() -> None:
    import logging

    from gateway.logging import RedactSecretsFilter

    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "key %s token=%s", ("sk-admin_abcdefghijkl", "t0ps3cret"), None
    )
    record.detail = "Authorization: Bearer eyJabc.eyJdef.ghi"
    RedactSecretsFilter().filter(record)
    assert "sk-admin_abcdefghijkl" not in record.getMessage()
    assert "t0ps3cret" not in record.getMessage()
    assert "eyJabc" not in record.detail  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "missing", ["DJANGO_SECRET_KEY", "JWT_SECRET", "APIKEY_SECRET", "MODEL_PROVIDER_SECRET"]
)
def test_prod_refuses_to_start_with_a_default_secret(tmp_path: Path, missing: str) -> None:
    secrets = {
        "DJANGO_SECRET_KEY": "x" * 50,
        "JWT_SECRET": "y" * 50,
        "APIKEY_SECRET": "z" * 50,
        "MODEL_PROVIDER_SECRET": "w" * 50,
    }
    del secrets[missing]
    env = _bare_env(tmp_path, GATEWAY_ENV="prod", DJANGO_ALLOWED_HOSTS="gateway.example.com", **secrets)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert f"{missing} is unset or still the development default" in result.stderr


def test_prod_starts_with_real_secrets(tmp_path: Path) -> None:
    env = _bare_env(
        tmp_path,
        GATEWAY_ENV="prod",
        DJANGO_ALLOWED_HOSTS="gateway.example.com",
        DJANGO_SECRET_KEY="x" * 50,
        JWT_SECRET="y" * 50,
        APIKEY_SECRET="z" * 50,
        MODEL_PROVIDER_SECRET="w" * 50,
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
