"""The MCP mount (settings.ASGI_MOUNTS), which loads the MCP SDK on the first MCP request.

The SDK and what it pulls in (pydantic models of every MCP type, sse-starlette, the client
half) cost a web worker about 35 MB of memory and a second of start-up; a worker that serves
only chat would carry them for nothing. So the router sees this light app at /v1/mcp and
/v1/conv/mcp, and the first request there imports mcp_server.transport and starts its runtime
(the SDK's session manager and the Redis hub of resource updates) in a task of the serving
loop. That task enters and leaves the runtime's lifespan itself, which anyio's task groups
require; ASGI lifespan shutdown (or nothing, under daphne) ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from gateway.asgi import Mount, Receive, Scope, Send

if TYPE_CHECKING:
    from mcp_server.transport import McpApp

PATHS = frozenset({"/v1/mcp", "/v1/conv/mcp"})


class _Started:
    """The runtime of one event loop: the task that holds its lifespan open, and how to end it."""

    def __init__(self, task: asyncio.Task[None], stopping: asyncio.Event) -> None:
        self.task = task
        self.stopping = stopping


class LazyMcp:
    def __init__(self) -> None:
        self._app: McpApp | None = None
        self._started: dict[asyncio.AbstractEventLoop, _Started] = {}
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        app = self._app
        if app is None or loop not in self._started:
            app = await self._start(loop)
        await app(scope, receive, send)

    async def _start(self, loop: asyncio.AbstractEventLoop) -> McpApp:
        # No await between the lookup and the insert: one lock per loop, race-free.
        async with self._locks.setdefault(loop, asyncio.Lock()):
            if self._app is None:
                from mcp_server.transport import McpApp

                self._app = McpApp()
            if loop not in self._started:
                await self._run_runtime(loop, self._app)
        return self._app

    async def _run_runtime(self, loop: asyncio.AbstractEventLoop, app: McpApp) -> None:
        ready, stopping = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with app.runtime.lifespan():
                ready.set()
                await stopping.wait()

        task = loop.create_task(hold(), name="mcp-runtime")
        waiter = loop.create_task(ready.wait())
        await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not ready.is_set():
            await task  # it failed to start: raise its error to this request (and the next tries anew)
        self._started[loop] = _Started(task, stopping)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            started = self._started.pop(asyncio.get_running_loop(), None)
            if started is not None:
                started.stopping.set()
                await started.task


def mount() -> Any:
    """The factory named in settings.ASGI_MOUNTS."""
    app = LazyMcp()
    return Mount(prefixes=tuple(sorted(PATHS)), app=app, lifespan=app.lifespan)
