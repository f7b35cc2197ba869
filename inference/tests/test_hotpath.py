"""What the raw ASGI hot path does besides relaying: the request id (echoed, sent upstream,
logged), CORS, the JSON body untouched, the provider key attached server-side, 405/413
envelopes, model ids with slashes, and the access log line without secrets."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import orjson
import pytest

from inference import services
from inference.models import Provider
from inference.tests.fake_upstream import FakeUpstream
from organizations.tests.factories import make_api_key
from tests.fixtures import register
from tests.live_server import LiveGateway
from tests.openai_spec import assert_valid

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "hello"}]


def _post(gateway: LiveGateway, key: str, body: Any, **headers: str) -> httpx.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers},
        timeout=10,
    )


def test_body_goes_upstream_unchanged_with_the_providers_key(
    live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key: Any
) -> None:
    body = {
        "model": "fake-model",
        "messages": MESSAGES,
        "temperature": 0.25,
        "vendor_extension": {"top_k": 7, "nested": [1, "two"]},
    }
    response = _post(live_gateway, project_key[1], body, **{"X-Request-ID": "trace-abc.123"})
    assert response.status_code == 200
    received = upstream.requests[-1]
    assert received["body"] == body  # unknown fields kept
    assert received["headers"]["authorization"] == "Bearer upstream-secret-key"  # never the client's key
    assert received["headers"]["x-request-id"] == "trace-abc.123"
    assert response.headers["x-request-id"] == "trace-abc.123"
    assert response.headers["content-type"] == "application/json"


def test_a_cookie_set_by_the_model_server_never_reaches_another_call(
    live_gateway: LiveGateway, upstream: FakeUpstream, project_key: Any
) -> None:
    # One upstream session serves every tenant: a cookie jar on it would hand tenant A's cookie
    # to tenant B's calls. By name, not IP: aiohttp's jar keeps no cookie of an IP address.
    provider = services.provider_create(
        name="by-name", base_url=f"http://localhost:{upstream.port}", api_key="upstream-secret-key"
    )
    assert services.provider_check(provider_id=provider.pk, force=True).healthy  # type: ignore[union-attr]
    upstream.response_headers = [(b"set-cookie", b"upstream-session=tenant-a; Path=/")]
    _, other_key = make_api_key()
    first = _post(live_gateway, project_key[1], {"model": "fake-model", "messages": MESSAGES})
    assert first.status_code == 200
    assert "set-cookie" not in first.headers  # the model server's headers are not relayed either
    second = _post(live_gateway, other_key, {"model": "fake-model", "messages": MESSAGES})
    assert second.status_code == 200
    assert "cookie" not in upstream.requests[-1]["headers"]


def test_forged_request_ids_are_replaced(
    live_gateway: LiveGateway, provider: Provider, project_key: Any
) -> None:
    for forged in ("x" * 200, "a b", '"},{"level":"ERROR"'):
        response = _post(
            live_gateway,
            project_key[1],
            {"model": "fake-model", "messages": MESSAGES},
            **{"X-Request-ID": forged},
        )
        assert response.headers["x-request-id"] != forged
        assert len(response.headers["x-request-id"]) == 36  # a fresh uuid


def test_cors_preflight_and_simple_request(
    live_gateway: LiveGateway, provider: Provider, project_key: Any
) -> None:
    preflight = httpx.options(
        f"{live_gateway.url}/v1/chat/completions",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "POST" in preflight.headers["access-control-allow-methods"]

    allowed = _post(
        live_gateway,
        project_key[1],
        {"model": "fake-model", "messages": MESSAGES},
        Origin="http://localhost:3000",
    )
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()

    denied = _post(
        live_gateway,
        project_key[1],
        {"model": "fake-model", "messages": MESSAGES},
        Origin="https://evil.example",
    )
    assert "access-control-allow-origin" not in denied.headers
    assert denied.headers.get_list("vary") == ["Origin"]

    # Without Origin (not a browser), the answer still says that it varies by Origin, once.
    plain = _post(live_gateway, project_key[1], {"model": "fake-model", "messages": MESSAGES})
    assert plain.status_code == 200
    assert plain.headers.get_list("vary") == ["Origin"]
    assert "access-control-allow-origin" not in plain.headers


def test_wrong_method_and_oversized_body(
    settings: Any, live_gateway: LiveGateway, provider: Provider, project_key: Any
) -> None:
    wrong = httpx.get(
        f"{live_gateway.url}/v1/chat/completions", headers={"Authorization": f"Bearer {project_key[1]}"}
    )
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert_valid("ErrorResponse", wrong.json())
    wrong = httpx.post(f"{live_gateway.url}/v1/models", headers={"Authorization": f"Bearer {project_key[1]}"})
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"

    settings.CHAT_MAX_BODY_BYTES = 1000
    big = {"model": "fake-model", "messages": [{"role": "user", "content": "x" * 5000}]}
    too_large = _post(live_gateway, project_key[1], big)
    assert too_large.status_code == 413
    assert too_large.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "fake-model", "messages": []}', "messages"),
        (b'{"model": "fake-model", "messages": "hi"}', "messages"),
        (
            b'{"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            "stream",
        ),
    ],
)
def test_bad_bodies_are_400_with_param(
    live_gateway: LiveGateway, provider: Provider, project_key: Any, raw: bytes, param: str | None
) -> None:
    response = _post(live_gateway, project_key[1], raw)
    assert response.status_code == 400
    assert_valid("ErrorResponse", response.json())
    assert response.json()["error"]["param"] == param


def test_model_ids_with_slashes(make_upstream: Any, project_key: Any, live_gateway: LiveGateway) -> None:
    register(make_upstream(["meta-llama/Llama-3.1-8B-Instruct"]), name="hf")
    headers = {"Authorization": f"Bearer {project_key[1]}"}
    found = httpx.get(f"{live_gateway.url}/v1/models/meta-llama/Llama-3.1-8B-Instruct", headers=headers)
    assert found.status_code == 200
    assert found.json()["id"] == "meta-llama/Llama-3.1-8B-Instruct"
    missing = httpx.get(f"{live_gateway.url}/v1/models/meta-llama/nope", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


def test_one_access_line_per_request_without_secrets(
    caplog: pytest.LogCaptureFixture, live_gateway: LiveGateway, provider: Provider, project_key: Any
) -> None:
    caplog.set_level(logging.INFO)
    response = _post(
        live_gateway, project_key[1], {"model": "fake-model", "messages": MESSAGES, "stream": True}
    )
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]

    def access_lines() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "gateway.access" and getattr(r, "request_id", None) == request_id
        ]

    deadline = time.monotonic() + 3  # the line is written when the server has finished the stream
    while not access_lines() and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = access_lines()
    assert len(lines) == 1
    line = lines[0]
    assert (line.method, line.path, line.status, line.streaming) == (
        "POST",
        "/v1/chat/completions",
        200,
        True,
    )  # type: ignore[attr-defined]
    assert line.project_id == project_key[0].project.public_id  # type: ignore[attr-defined]
    everything = "\n".join(str(r.__dict__) for r in caplog.records)
    assert project_key[1] not in everything
    assert "upstream-secret-key" not in everything
