"""`GET /` points a newcomer at the API, its docs, health and admin; docs pages take a trailing slash."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_index_links_to_api_docs_health_and_admin() -> None:
    client = Client()
    response = client.get("/", HTTP_HOST="gateway.example:8080")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["object"] == "gateway"
    links = body["links"]
    assert links["api_base"] == "http://gateway.example:8080/v1"
    for name, path in {
        "swagger": "/api/swagger",
        "redoc": "/api/docs",
        "openapi": "/api/schema",
        "health": "/healthcheck",
        "ready": "/readyz",
        "version": "/v1/version",
        "admin": "/admin/",
    }.items():
        assert links[name] == f"http://gateway.example:8080{path}"
    # Each link answers (admin by sending the browser to its login page).
    for name in ("swagger", "redoc", "openapi", "health", "version"):
        assert client.get(links[name].removeprefix("http://gateway.example:8080")).status_code == 200, name
    assert client.get("/admin/").status_code == 302


def test_index_is_get_only() -> None:
    response = Client().post("/")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", ["/api/swagger/", "/api/docs/", "/api/schema/"])
def test_documentation_pages_take_a_trailing_slash(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 200
    same = Client().get(path.rstrip("/"))
    assert same.status_code == 200
    assert response["Content-Type"] == same["Content-Type"]
    if path != "/api/schema/":
        assert "/api/schema" in response.content.decode()  # the page loads our schema
