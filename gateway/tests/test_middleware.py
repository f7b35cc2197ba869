from __future__ import annotations

import logging
import uuid

import pytest
from django.test import Client

from gateway.settings import cors_origin_rules


def test_fresh_request_id_on_every_response(client: Client) -> None:
    first = client.get("/healthcheck")["X-Request-ID"]
    second = client.get("/healthcheck")["X-Request-ID"]
    assert uuid.UUID(first)
    assert uuid.UUID(second)
    assert first != second


def test_well_formed_caller_request_id_is_echoed(client: Client) -> None:
    response = client.get("/healthcheck", HTTP_X_REQUEST_ID="trace-1234.abc")
    assert response["X-Request-ID"] == "trace-1234.abc"


@pytest.mark.parametrize("bad", ["x" * 200, "has space", "new\\nline", "<script>", ""])
def test_malformed_caller_request_id_is_replaced(client: Client, bad: str) -> None:
    response = client.get("/healthcheck", HTTP_X_REQUEST_ID=bad)
    assert uuid.UUID(response["X-Request-ID"])


def test_access_log_line_carries_request_id(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        response = client.get("/v1/version", HTTP_X_REQUEST_ID="req-abc-123")
    [record] = [r for r in caplog.records if r.name == "gateway.access"]
    assert record.request_id == "req-abc-123"  # type: ignore[attr-defined]
    assert record.status == 200  # type: ignore[attr-defined]
    assert record.path == "/v1/version"  # type: ignore[attr-defined]
    assert response["X-Request-ID"] == "req-abc-123"


# --- CORS -----------------------------------------------------------------------------------

CORS_HOSTS = ["*jan.ai", "*.menlo.ai", "http://localhost:3001"]


@pytest.fixture
def cors(settings):  # type: ignore[no-untyped-def]
    allow_all, exact, regexes = cors_origin_rules(CORS_HOSTS)
    settings.CORS_ALLOW_ALL_ORIGINS = allow_all
    settings.CORS_ALLOWED_ORIGINS = exact
    settings.CORS_ALLOWED_ORIGIN_REGEXES = regexes


@pytest.mark.usefixtures("cors")
@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:3001",
        "https://chat.jan.ai",
        "https://jan.ai",
        "https://a.b.jan.ai:8443",
        "https://x.menlo.ai",
    ],
)
def test_allowed_origin_is_echoed_with_credentials(client: Client, origin: str) -> None:
    response = client.get("/v1/version", HTTP_ORIGIN=origin)
    assert response["Access-Control-Allow-Origin"] == origin
    assert response["Access-Control-Allow-Credentials"] == "true"
    exposed = response["Access-Control-Expose-Headers"].lower()
    assert "mcp-session-id" in exposed
    assert "x-request-id" in exposed


@pytest.mark.usefixtures("cors")
@pytest.mark.parametrize(
    "origin",
    [
        "https://evil-jan.ai",
        "https://jan.ai.evil.com",
        "http://localhost:3002",
        "https://menlo.ai.attacker.io",
        "null",
    ],
)
def test_denied_origin_gets_no_cors_headers(client: Client, origin: str) -> None:
    response = client.get("/v1/version", HTTP_ORIGIN=origin)
    assert "Access-Control-Allow-Origin" not in response


@pytest.mark.usefixtures("cors")
def test_preflight_allows_openai_and_mcp_headers(client: Client) -> None:
    response = client.options(
        "/v1/chat/completions",
        HTTP_ORIGIN="https://chat.jan.ai",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, mcp-session-id, openai-project",
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://chat.jan.ai"
    assert "POST" in response["Access-Control-Allow-Methods"]
    allowed = response["Access-Control-Allow-Headers"].lower()
    for header in ("authorization", "content-type", "mcp-session-id", "openai-project"):
        assert header in allowed


@pytest.mark.usefixtures("cors")
def test_preflight_from_denied_origin_has_no_allow_origin(client: Client) -> None:
    response = client.options(
        "/v1/chat/completions", HTTP_ORIGIN="https://evil-jan.ai", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert "Access-Control-Allow-Origin" not in response


def test_lone_star_allows_every_origin() -> None:
    assert cors_origin_rules(["*"]) == (True, [], [])
