from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = [pytest.mark.urls("gateway.tests.urls_for_tests")]

ENVELOPE_KEYS = {"message", "type", "param", "code"}


def _assert_envelope(response, status: int, error_type: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ENVELOPE_KEYS
    assert body["error"]["type"] == error_type
    assert "Traceback" not in response.content.decode()
    assert "<html" not in response.content.decode().lower()
    return body["error"]


def test_validation_error_is_400_with_first_problem_and_param(client: Client) -> None:
    response = client.post(
        "/test/echo", {"name": "far too long", "count": 0}, content_type="application/json"
    )
    error = _assert_envelope(response, 400, "invalid_request_error")
    assert error["param"] == "name"
    assert error["code"] == "invalid_request"


def test_malformed_json_is_400(client: Client) -> None:
    response = client.post("/test/echo", "{not json", content_type="application/json")
    error = _assert_envelope(response, 400, "invalid_request_error")
    assert error["code"] == "invalid_json"


def test_wrong_content_type_is_415(client: Client) -> None:
    response = client.post("/test/echo", "name=a", content_type="text/plain")
    _assert_envelope(response, 415, "invalid_request_error")


def test_forbidden_is_403(client: Client) -> None:
    _assert_envelope(client.get("/test/forbidden"), 403, "permission_error")


def test_unknown_url_is_404(client: Client) -> None:
    error = _assert_envelope(client.get("/v1/no-such-thing"), 404, "invalid_request_error")
    assert error["code"] == "unknown_url"


def test_unknown_url_with_trailing_slash_is_404_not_a_redirect(client: Client) -> None:
    _assert_envelope(client.post("/v1/version/", {}), 404, "invalid_request_error")


def test_wrong_method_is_405_json_for_plain_and_drf_views(client: Client) -> None:
    error = _assert_envelope(client.post("/healthcheck"), 405, "invalid_request_error")
    assert error["code"] == "method_not_allowed"
    _assert_envelope(client.get("/test/echo"), 405, "invalid_request_error")


def test_unhandled_exception_is_500_without_traceback() -> None:
    client = Client(raise_request_exception=False)
    response = client.get("/test/crash")
    error = _assert_envelope(response, 500, "server_error")
    assert "boom" not in response.content.decode()
    assert error["code"] == "internal_error"


def test_sse_error_is_a_data_event_with_the_envelope() -> None:
    import json

    from gateway import errors

    frame = errors.sse_error(errors.UpstreamError("upstream went away"))
    assert frame.startswith(b"data: ")
    assert frame.endswith(b"\n\n")
    body = json.loads(frame[len(b"data: ") :])
    assert body == {
        "error": {
            "message": "upstream went away",
            "type": "server_error",
            "param": None,
            "code": "upstream_error",
        }
    }


@pytest.mark.django_db
def test_a_body_over_the_upload_limit_is_413_in_the_envelope(settings: Any) -> None:
    from organizations.tests.factories import make_api_key

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    _, raw = make_api_key(key_type="admin")
    response = Client().post(
        "/v1/organization/projects",
        data='{"name": "' + "x" * 5000 + '"}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
