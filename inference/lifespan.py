"""ASGI lifespan for inference: flush usage and close upstream connections on shutdown."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from inference import upstream
from inference.usage import usage_buffer


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    yield
    await usage_buffer.close()
    await upstream.close_all()
