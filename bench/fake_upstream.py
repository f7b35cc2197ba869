"""A fast fake OpenAI upstream for the benchmark: raw ASGI + orjson, no framework.

Non-stream: one chat.completion. Stream: role chunk, 20 content chunks, finish chunk, usage
chunk (when asked), [DONE] — the shape shared/reference/performance.md measured.
"""

from __future__ import annotations

import argparse
from typing import Any

import orjson
import uvicorn

MODEL = "bench-model"
MODELS = orjson.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "bench"}]}
)
COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok " * 20},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 20, "total_tokens": 25},
    }
)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


STREAM = (
    [_chunk({"role": "assistant", "content": ""})]
    + [_chunk({"content": "ok "}) for _ in range(20)]
    + [_chunk({}, "stop")]
)
USAGE = (
    b"data: "
    + orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": MODEL,
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 20, "total_tokens": 25},
        }
    )
    + b"\n\n"
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"].endswith("/models"):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": MODELS})
        return
    request = orjson.loads(body) if body else {}
    if not request.get("stream"):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": COMPLETION})
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
    )
    for chunk in STREAM:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    if (request.get("stream_options") or {}).get("include_usage"):
        await send({"type": "http.response.body", "body": USAGE, "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
