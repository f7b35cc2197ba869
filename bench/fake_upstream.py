"""A fast fake OpenAI upstream for the benchmark: raw ASGI + orjson, no framework.

    python bench/fake_upstream.py --port 9100 [--chunk-delay-ms 10]

It must cost as little CPU as possible, so that "direct to the fake" is the floor the gateway
is compared with: every reply is serialised once at import and only the bytes are sent.

- ``GET /v1/models``: one model (``--model``, default ``bench-model``).
- ``POST /v1/chat/completions`` non-stream: one chat.completion with 20 words.
- ``stream: true``: role chunk, 20 content chunks, finish chunk, the usage chunk (only with
  ``stream_options.include_usage``; every chunk then carries ``"usage": null`` as OpenAI does),
  ``data: [DONE]`` (the shape of a typical chat stream).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvicorn

CONTENT_CHUNKS = 20
PROMPT_TOKENS = 5
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class Replies:
    """Every byte string the fake can send, built once."""

    def __init__(self, model: str) -> None:
        created = int(time.time())
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": CONTENT_CHUNKS,
            "total_tokens": PROMPT_TOKENS + CONTENT_CHUNKS,
        }
        self.models = orjson.dumps(
            {
                "object": "list",
                "data": [{"id": model, "object": "model", "created": created, "owned_by": "bench"}],
            }
        )
        self.completion = orjson.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok " * CONTENT_CHUNKS, "refusal": None},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": usage,
            }
        )

        def chunk(delta: dict[str, Any], finish: str | None, with_usage: bool) -> bytes:
            body: dict[str, Any] = {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            if with_usage:
                body["usage"] = None
            return b"data: " + orjson.dumps(body) + b"\n\n"

        def stream(with_usage: bool) -> list[bytes]:
            chunks = [chunk({"role": "assistant", "content": ""}, None, with_usage)]
            chunks += [chunk({"content": "ok "}, None, with_usage) for _ in range(CONTENT_CHUNKS)]
            chunks.append(chunk({}, "stop", with_usage))
            if with_usage:
                final = {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
                chunks.append(b"data: " + orjson.dumps(final) + b"\n\n")
            return chunks

        self.stream_plain = stream(with_usage=False)
        self.stream_usage = stream(with_usage=True)
        # A small embedding model's answer: one 384-dimension vector of floats.
        self.embeddings = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": 0, "embedding": [(i % 17 - 8) / 8 for i in range(384)]}
                ],
                "model": model,
                "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS},
            }
        )


JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
NOT_FOUND = orjson.dumps(
    {"error": {"message": "no such route", "type": "invalid_request_error", "param": None, "code": None}}
)


def make_app(model: str, chunk_delay: float) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    replies = Replies(model)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path.endswith("/models"):
            await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
            await send({"type": "http.response.body", "body": replies.models})
            return
        if path.endswith("/embeddings"):
            await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
            await send({"type": "http.response.body", "body": replies.embeddings})
            return
        if not path.endswith("/chat/completions"):
            await send({"type": "http.response.start", "status": 404, "headers": JSON_HEADERS})
            await send({"type": "http.response.body", "body": NOT_FOUND})
            return
        request = orjson.loads(body) if body else {}
        if not request.get("stream"):
            await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
            await send({"type": "http.response.body", "body": replies.completion})
            return
        with_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        chunks = replies.stream_usage if with_usage else replies.stream_plain
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        for index, chunk in enumerate(chunks):
            # Realistic pacing (10 ms, a fast model's token rate) between content chunks only.
            if chunk_delay and 1 <= index <= CONTENT_CHUNKS:
                await asyncio.sleep(chunk_delay)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="pause before each content chunk")
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.model, args.chunk_delay_ms / 1000),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        interface="asgi3",
    )


if __name__ == "__main__":
    main()
