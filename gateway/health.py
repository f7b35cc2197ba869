"""Liveness, readiness and version. Plain async views: no auth, no database on /healthcheck."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from gateway import errors
from gateway.schema import ExternalOperation

_STARTED_AT = int(time.time())


def _json(payload: object, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")


def _git_commit() -> str | None:
    """GIT_COMMIT from the build, else read from the checkout without running git."""
    if commit := os.environ.get("GIT_COMMIT"):
        return commit
    git_dir = Path(settings.BASE_DIR) / ".git"
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head.removeprefix("ref: ")
        ref_file = git_dir / ref
        if ref_file.exists():
            return ref_file.read_text().strip() or None
        packed = (git_dir / "packed-refs").read_text() if (git_dir / "packed-refs").exists() else ""
        for line in packed.splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    except OSError:
        return None
    return None


_GIT_COMMIT = _git_commit()


@require_GET
async def healthcheck(request: HttpRequest) -> HttpResponse:
    return _json("ok")


@require_GET
async def version(request: HttpRequest) -> HttpResponse:
    return _json(
        {
            "version": settings.GATEWAY_VERSION,
            "git_commit": _GIT_COMMIT,
            "build_time": os.environ.get("BUILD_TIME"),
            "started_at": _STARTED_AT,
            "environment": settings.GATEWAY_ENV,
        }
    )


def _check_database() -> None:
    for alias in connections:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")


def _check_redis() -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


@require_GET
async def readyz(request: HttpRequest) -> HttpResponse:
    checks: dict[str, str] = {}
    parts = [("database", _check_database)]
    if settings.REDIS_URL:
        parts.append(("redis", _check_redis))
    else:
        checks["redis"] = "not configured"
    for name, check in parts:
        try:
            await sync_to_async(check)()
        except Exception as exc:
            # Name the part, not the DSN: connection errors can carry credentials.
            err = errors.ServiceUnavailable(f"{name} is unreachable ({type(exc).__name__}).", param=name)
            return errors.json_error(err)
        checks[name] = "ok"
    return _json({"status": "ok", "checks": checks})


_SERVER_ERRORS: tuple[str, ...] = ()
OPERATIONS = [
    ExternalOperation(
        path="/healthcheck",
        method="get",
        operation_id="healthcheck",
        tag="Server",
        summary="Liveness",
        description='`"ok"` while the process serves requests. No credential.',
        responses={
            "200": {"description": "Alive", "content": {"application/json": {"schema": {"const": "ok"}}}}
        },
        security=(),
        errors=_SERVER_ERRORS,
    ),
    ExternalOperation(
        path="/readyz",
        method="get",
        operation_id="readiness",
        tag="Server",
        summary="Readiness: database and Redis reachable",
        description="503 with the envelope naming the part that failed. No credential.",
        responses={
            "200": {
                "description": "Ready",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "status": {"const": "ok"},
                                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
                            },
                            "required": ["status", "checks"],
                        }
                    }
                },
            }
        },
        security=(),
        errors=_SERVER_ERRORS,
        extra_errors={"503": "The database or Redis cannot be reached"},
    ),
    ExternalOperation(
        path="/v1/version",
        method="get",
        operation_id="version",
        tag="Server",
        summary="Version and build",
        description="No credential.",
        responses={
            "200": {
                "description": "The running build",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "version": {"type": "string"},
                                "git_commit": {"type": ["string", "null"]},
                                "build_time": {"type": ["string", "null"]},
                                "started_at": {"type": "integer", "description": "Unix seconds"},
                                "environment": {"enum": ["dev", "test", "prod"]},
                            },
                            "required": ["version", "git_commit", "build_time", "started_at", "environment"],
                        }
                    }
                },
            }
        },
        security=(),
        errors=_SERVER_ERRORS,
    ),
]
