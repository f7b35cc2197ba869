"""Liveness, readiness and version. Plain async views: no auth, no database on /healthcheck."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from gateway import errors
from gateway.background import run_sync
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


# Each part gets this long, all at once: a probe must answer fast even when a server hangs
# (libpq's own connect timeout cannot go below 2 s, so the bound is kept here).
_CHECK_SECONDS = 0.8


async def _postgres_query(alias: str, sql: str) -> tuple[Any, ...] | None:
    """One statement on a fresh connection (never the pool's: a probe must not wait for a pooled
    connection, nor hand back one it broke), with connect and statement timeouts."""
    import psycopg

    from gateway.db_router import libpq_params

    milliseconds = int(_CHECK_SECONDS * 1000)
    connection = await psycopg.AsyncConnection.connect(
        **libpq_params(alias),
        autocommit=True,
        connect_timeout=2,
        options=f"-c statement_timeout={milliseconds}",
    )
    try:
        cursor = await connection.execute(sql, prepare=False)
        return await cursor.fetchone()
    finally:
        await connection.close()


async def _check_database() -> str:
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
        await _postgres_query(DEFAULT_DB_ALIAS, "SELECT 1")
    else:  # the embedded SQLite file: local, nothing to wait for

        def select_one() -> None:
            with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
                cursor.execute("SELECT 1")

        await run_sync(select_one)
    return "ok"


async def _check_redis() -> str:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=_CHECK_SECONDS, socket_timeout=_CHECK_SECONDS
    )
    try:
        await client.ping()
    finally:
        await client.aclose()
    return "ok"


async def _check_replica(alias: str) -> dict[str, Any]:
    """A replica's state and lag. A replica that is down does not make the gateway unready (the
    primary serves its reads), but it is named here and taken out of rotation."""
    from gateway.db_router import PROBE_SQL, ReplicaStatus, lsn_parse, monitor

    try:
        row = await asyncio.wait_for(_postgres_query(alias, PROBE_SQL), _CHECK_SECONDS)
        if row is None:
            raise LookupError("no answer")
        status = ReplicaStatus(alias, True, lsn_parse(row[0]), float(row[1]), time.monotonic())
    except Exception as exc:  # TimeoutError included
        status = ReplicaStatus(alias, False, None, None, time.monotonic(), type(exc).__name__)
    monitor.remember(status)
    if not status.online:
        return {"status": "unreachable", "lag_seconds": None, "in_rotation": False, "error": status.error}
    return {
        "status": "ok" if status.in_rotation else "lagging",
        "lag_seconds": round(status.lag_seconds or 0.0, 3),
        "in_rotation": status.in_rotation,
    }


async def _bounded(name: str, check: Callable[[], Awaitable[str]]) -> tuple[str, str | None]:
    try:
        return name, await asyncio.wait_for(check(), _CHECK_SECONDS)
    except Exception as exc:  # TimeoutError included
        return name, type(exc).__name__


@require_GET
async def readyz(request: HttpRequest) -> HttpResponse:
    """Database and Redis reachable (503 naming the part that is not), and each read replica with
    its lag. Every part is checked at once, each within _CHECK_SECONDS."""
    parts: list[tuple[str, Callable[[], Awaitable[str]]]] = [("database", _check_database)]
    checks: dict[str, str] = {}
    if settings.REDIS_URL:
        parts.append(("redis", _check_redis))
    else:
        checks["redis"] = "not configured"
    results = await asyncio.gather(
        asyncio.gather(*(_bounded(name, check) for name, check in parts)),
        asyncio.gather(*(_check_replica(alias) for alias in settings.DATABASE_REPLICAS)),
    )
    for name, outcome in results[0]:
        if outcome != "ok":
            # Name the part, not the DSN: connection errors can carry credentials.
            err = errors.ServiceUnavailable(f"{name} is unreachable ({outcome}).", param=name)
            return errors.json_error(err)
        checks[name] = outcome
    replicas = dict(zip(settings.DATABASE_REPLICAS, results[1], strict=True))
    for alias, replica in replicas.items():
        checks[alias] = replica["status"]
    return _json({"status": "ok", "checks": checks, "replicas": replicas})


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
        summary="Readiness: database and Redis reachable; read replicas and their lag",
        description=(
            "503 with the envelope naming the part that failed, within a second. A read replica that"
            " is down or lagging does not fail the probe (the primary serves its reads); it is named"
            " in `replicas`. No credential."
        ),
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
                                "replicas": {
                                    "type": "object",
                                    "additionalProperties": {
                                        "type": "object",
                                        "properties": {
                                            "status": {"enum": ["ok", "lagging", "unreachable"]},
                                            "lag_seconds": {"type": ["number", "null"]},
                                            "in_rotation": {"type": "boolean"},
                                            "error": {"type": "string"},
                                        },
                                        "required": ["status", "lag_seconds", "in_rotation"],
                                    },
                                },
                            },
                            "required": ["status", "checks", "replicas"],
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
