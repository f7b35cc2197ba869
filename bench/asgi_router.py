"""The per-request cost of routing alone: gateway.asgi.GatewayRouter against Channels'
ProtocolTypeRouter + URLRouter over the same mounts (the hot path, MCP, static files, Django).

    .venv/bin/python bench/asgi_router.py [--calls 200000]

Every app behind the routers is a no-op, so the figure is the router's own CPU time per request,
measured in one event loop with no I/O. The README's architecture section quotes it.
"""

# ruff: noqa: E402 -- Django is set up before the imports that read its settings
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

import django

django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path, re_path

from gateway.asgi import GatewayRouter, Mount

PATHS = {
    "hot path (chat)": "/v1/chat/completions",
    "MCP": "/v1/mcp",
    "Django (conversations)": "/v1/conversations/conv_123/items",
}


async def _noop(scope: Any, receive: Any, send: Any) -> None:
    return None


def _gateway_router() -> GatewayRouter:
    return GatewayRouter(
        default=_noop,
        mounts=[
            Mount(prefixes=("/static",), app=_noop),
            Mount(prefixes=("/v1/chat/completions", "/v1/models"), app=_noop),
            Mount(prefixes=("/v1/conv/mcp", "/v1/mcp"), app=_noop),
        ],
    )


def _channels_router() -> ProtocolTypeRouter:
    return ProtocolTypeRouter(
        {
            "http": URLRouter(
                [
                    re_path(r"^static/", _noop),
                    path("v1/chat/completions", _noop),
                    re_path(r"^v1/models(?:/|$)", _noop),
                    re_path(r"^v1/(?:conv/)?mcp(?:/|$)", _noop),
                    re_path(r"", _noop),  # Django
                ]
            ),
        }
    )


async def _per_call_us(app: Any, request_path: str, calls: int) -> float:
    scope = {"type": "http", "path": request_path, "method": "POST", "headers": [], "root_path": ""}
    for _ in range(1000):  # warm
        await app(dict(scope), _noop, _noop)
    started = time.process_time()
    for _ in range(calls):
        await app(dict(scope), _noop, _noop)
    return (time.process_time() - started) / calls * 1e6


async def main(calls: int) -> None:
    baseline = await _per_call_us(_noop, "/", calls)
    print(f"{'path':<26} {'GatewayRouter':>14} {'Channels':>10}   (µs of CPU per request, routing only)")
    for label, request_path in PATHS.items():
        ours = await _per_call_us(_gateway_router(), request_path, calls) - baseline
        theirs = await _per_call_us(_channels_router(), request_path, calls) - baseline
        print(f"{label:<26} {ours:>14.2f} {theirs:>10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().calls))
