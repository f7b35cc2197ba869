"""`GET /`: where a newcomer lands. Points at the API, its documentation, health and admin."""

from __future__ import annotations

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from gateway.schema import ExternalOperation

# Relative paths, made absolute against the request's own scheme and host.
LINKS = {
    "api_base": "/v1",
    "swagger": "/api/swagger",
    "redoc": "/api/docs",
    "openapi": "/api/schema",
    "health": "/healthcheck",
    "ready": "/readyz",
    "version": "/v1/version",
    "admin": "/admin/",
    "metrics": "/metrics",
}


@require_GET
async def index(request: HttpRequest) -> HttpResponse:
    links = {name: request.build_absolute_uri(path) for name, path in LINKS.items()}
    if not settings.METRICS_ENABLED:
        links.pop("metrics")
    body = {
        "object": "gateway",
        "name": "Jan API Gateway",
        "version": settings.GATEWAY_VERSION,
        "environment": settings.GATEWAY_ENV,
        "links": links,
        "hint": "Point an OpenAI SDK at links.api_base with an API key "
        "(manage.py createprojectkey --email you@example.com prints one).",
    }
    return HttpResponse(orjson.dumps(body), content_type="application/json")


OPERATIONS = [
    ExternalOperation(
        path="/",
        method="get",
        operation_id="index",
        tag="Server",
        summary="Index: links to the API, its documentation, health and admin",
        description="No credential. Every link is absolute, built from the request's scheme and host.",
        responses={
            "200": {
                "description": "The index",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "object": {"const": "gateway"},
                                "name": {"type": "string"},
                                "version": {"type": "string"},
                                "environment": {"type": "string"},
                                "links": {"type": "object", "additionalProperties": {"type": "string"}},
                                "hint": {"type": "string"},
                            },
                            "required": ["object", "name", "version", "links"],
                        }
                    }
                },
            }
        },
        security=(),
        errors=(),
    ),
]
