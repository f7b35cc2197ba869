"""A fake OpenAI-compatible model server: raw ASGI under uvicorn, on 127.0.0.1, in a thread.

Tests choose a behaviour per model id, read what the gateway forwarded (`requests`), and see
streaming clients that went away (`disconnects`).
"""

from __future__ import annotations

import asyncio
import base64
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import uvicorn

from tests.live_server import free_port

CONTENT = ["Hello", " from", " the", " fake", " model", "."]


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake123",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def _usage(body: dict[str, Any], completion: int) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


TOOL_CALLS = [
    {"id": "call_weather", "name": "get_weather", "arguments": ['{"city"', ': "Paris"}']},
    {"id": "call_time", "name": "get_time", "arguments": ['{"tz"', ': "CET"}']},
]


_SAMPLE_VALUES = {"string": "compat", "integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}


def agent_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The "agent" behaviour's move: call the first offered tool, unless a tool just answered.

    What an agent loop looks like from the gateway's side (think, call a tool, read its result,
    answer), with arguments that satisfy the tool's declared required properties.
    """
    messages = body.get("messages") or []
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    if not tools or (messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"):
        return None
    function = tools[0]["function"]
    schema = function.get("parameters") or {}
    properties = schema.get("properties") or {}
    arguments = {
        name: _SAMPLE_VALUES.get(str((properties.get(name) or {}).get("type")), "compat")
        for name in schema.get("required") or []
    }
    return {"id": "call_agent", "name": function["name"], "arguments": orjson.dumps(arguments).decode()}


class FakeUpstream:
    def __init__(self, models: list[str] | None = None, *, port: int | None = None) -> None:
        self.models = models or ["fake-model"]
        self.behaviour: dict[str, str] = {}  # model id → behaviour; default "text"
        # model id → the `capabilities` its /v1/models entry lists (Ollama's words); none: not said.
        self.capabilities: dict[str, list[str]] = {}
        self.down = False  # every endpoint answers 503
        # A chat request whose body holds these bytes gets a 500, whatever its model: a caller
        # whose requests crash the model server, while everyone else's work.
        self.crash_on: bytes | None = None
        self.delay = 0.0  # slow_first_byte / slow_stream pacing
        self.response_headers: list[tuple[bytes, bytes]] = []  # added to every JSON answer
        self.requests: list[dict[str, Any]] = []
        self.disconnects = 0
        self.port = port or free_port()  # a port of its own, or a stopped server's to restart it
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", interface="asgi3"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> FakeUpstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    # --- ASGI ------------------------------------------------------------------------------

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = orjson.loads(raw) if raw else None
        self.requests.append(
            {"method": scope["method"], "path": scope["path"], "headers": headers, "body": body}
        )
        if self.down:
            await self._json(
                send, 503, {"error": {"message": "down for maintenance", "type": "server_error"}}
            )
            return
        if scope["path"] == "/v1/models":
            data: list[dict[str, Any]] = [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in self.models
            ]
            for entry in data:
                if entry["id"] in self.capabilities:
                    entry["capabilities"] = self.capabilities[entry["id"]]
            await self._json(send, 200, {"object": "list", "data": data})
            return
        if scope["path"] == "/v1/embeddings" and isinstance(body, dict):
            await self._json(send, 200, embeddings(body))
            return
        if scope["path"] == "/v1/completions" and isinstance(body, dict):
            if body.get("stream"):
                await self._send_events(scope, receive, send, text_completion_events(body), "text")
            else:
                await self._json(send, 200, text_completion(body))
            return
        if scope["path"] != "/v1/chat/completions" or not isinstance(body, dict):
            await self._json(
                send, 404, {"error": {"message": "no such route", "type": "invalid_request_error"}}
            )
            return
        behaviour = self.behaviour.get(body.get("model", ""), "text")
        if behaviour == "error_500" or (self.crash_on and self.crash_on in raw):
            await self._json(send, 500, {"error": {"message": "the model crashed", "type": "server_error"}})
            return
        if behaviour == "error_400":
            await self._json(
                send,
                400,
                {
                    "error": {
                        "message": "maximum context length exceeded",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": "context_length_exceeded",
                    }
                },
            )
            return
        if behaviour == "slow_first_byte":
            await asyncio.sleep(self.delay)
        if body.get("stream"):
            await self._stream(scope, receive, send, body, behaviour)
        else:
            await self._json(send, 200, self._completion(body, behaviour))

    async def _json(self, send: Any, status: int, payload: Any) -> None:
        data = orjson.dumps(payload)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *self.response_headers],
            }
        )
        await send({"type": "http.response.body", "body": data})

    def _completion(self, body: dict[str, Any], behaviour: str) -> dict[str, Any]:
        model = body["model"]
        message: dict[str, Any] = {"role": "assistant", "content": "".join(CONTENT), "refusal": None}
        finish = "stop"
        if behaviour == "reasoning":
            message["reasoning_content"] = "Let me think."
        if behaviour == "tool_calls":
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": "".join(c["arguments"])},
                }
                for c in TOOL_CALLS
            ]
            finish = "tool_calls"
        if behaviour == "length":
            message["content"] = "Hello"
            finish = "length"
        if behaviour == "agent":
            message["reasoning_content"] = "Let me think."
            call = agent_call(body)
            if call is not None:
                message["content"] = None
                function = {"name": call["name"], "arguments": call["arguments"]}
                message["tool_calls"] = [{"id": call["id"], "type": "function", "function": function}]
                finish = "tool_calls"
        return {
            "id": "chatcmpl-fake123",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": _usage(body, len(CONTENT)),
        }

    def _events(self, body: dict[str, Any], behaviour: str) -> list[dict[str, Any]]:
        model = body["model"]
        events = [_chunk(model, {"role": "assistant", "content": ""})]
        if behaviour == "reasoning":
            events += [_chunk(model, {"reasoning_content": part}) for part in ["Let me", " think."]]
        if behaviour == "tool_calls":
            for index, call in enumerate(TOOL_CALLS):
                events.append(
                    _chunk(
                        model,
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": call["id"],
                                    "type": "function",
                                    "function": {"name": call["name"], "arguments": ""},
                                }
                            ]
                        },
                    )
                )
                for part in call["arguments"]:
                    events.append(
                        _chunk(model, {"tool_calls": [{"index": index, "function": {"arguments": part}}]})
                    )
            events.append(_chunk(model, {}, "tool_calls"))
        elif behaviour == "length":
            events += [_chunk(model, {"content": "Hello"}), _chunk(model, {}, "length")]
        elif behaviour == "agent" and (move := agent_call(body)) is not None:
            events.append(_chunk(model, {"reasoning_content": "Let me think."}))
            function = {"name": move["name"], "arguments": move["arguments"]}
            tool_call = {"index": 0, "id": move["id"], "type": "function", "function": function}
            events += [_chunk(model, {"tool_calls": [tool_call]}), _chunk(model, {}, "tool_calls")]
        else:
            if behaviour == "agent":
                events.append(_chunk(model, {"reasoning_content": "Let me think."}))
            count = 200 if behaviour == "slow_stream" else len(CONTENT)
            events += [_chunk(model, {"content": CONTENT[i % len(CONTENT)]}) for i in range(count)]
            events.append(_chunk(model, {}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = _chunk(model, {})
            usage["choices"] = []
            usage["usage"] = _usage(body, len(CONTENT))
            events.append(usage)
        return events

    async def _stream(
        self, scope: dict[str, Any], receive: Any, send: Any, body: dict[str, Any], behaviour: str
    ) -> None:
        await self._send_events(scope, receive, send, self._events(body, behaviour), behaviour)

    async def _send_events(
        self, scope: dict[str, Any], receive: Any, send: Any, events: list[dict[str, Any]], behaviour: str
    ) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        try:
            for index, event in enumerate(events):
                if gone.is_set():
                    self.disconnects += 1
                    return
                if behaviour == "cut_mid_stream" and index == 3:
                    raise RuntimeError("cut")  # uvicorn drops the connection mid-body
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + orjson.dumps(event) + b"\n\n",
                        "more_body": True,
                    }
                )
                if behaviour == "slow_stream":
                    await asyncio.sleep(self.delay)
            if behaviour != "no_done":
                await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()


# --- Embeddings and legacy text completions -------------------------------------------------


def _inputs(value: Any) -> list[Any]:
    """The items of an `input`/`prompt`: one string or token list, or a list of them."""
    if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], int)):
        return [value]
    return list(value)


def _tokens(item: Any) -> int:
    return len(item) if isinstance(item, list) else len(str(item).split())


def embedding_vector(item: Any, dimensions: int) -> list[float]:
    """A vector every float32 holds exactly (eighths), so base64 and float answers agree."""
    seed = sum(item) if isinstance(item, list) else sum(str(item).encode())
    return [((seed + 3 * i) % 16 - 8) / 8 for i in range(dimensions)]


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    dimensions = body.get("dimensions") or 8
    data = []
    for index, item in enumerate(_inputs(body["input"])):
        vector = embedding_vector(item, dimensions)
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    prompt = sum(_tokens(item) for item in _inputs(body["input"]))
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }


def _completion_usage(body: dict[str, Any]) -> dict[str, int]:
    prompt = sum(_tokens(item) for item in _inputs(body["prompt"]))
    return {"prompt_tokens": prompt, "completion_tokens": len(CONTENT), "total_tokens": prompt + len(CONTENT)}


def _text_logprobs(parts: list[str], count: int) -> dict[str, Any]:
    return {
        "tokens": parts,
        "token_logprobs": [-0.5] * len(parts),
        "top_logprobs": [{part: -0.5} for part in parts] if count else None,
        "text_offset": [sum(len(p) for p in parts[:i]) for i in range(len(parts))],
    }


def text_completion(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body["prompt"] if isinstance(body["prompt"], str) else ""
    text = (prompt if body.get("echo") else "") + "".join(CONTENT) + (body.get("suffix") or "")
    logprobs = body.get("logprobs")
    return {
        "id": "cmpl-fake123",
        "object": "text_completion",
        "created": 1700000000,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "text": text,
                "logprobs": _text_logprobs(CONTENT, logprobs) if logprobs is not None else None,
                "finish_reason": "stop",
            }
        ],
        "usage": _completion_usage(body),
    }


def text_completion_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    def chunk(text: str, finish: str | None) -> dict[str, Any]:
        return {
            "id": "cmpl-fake123",
            "object": "text_completion",
            "created": 1700000000,
            "model": body["model"],
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        }

    events = [chunk(part, None) for part in CONTENT] + [chunk("", "stop")]
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = chunk("", None)
        usage["choices"] = []
        usage["usage"] = _completion_usage(body)
        events.append(usage)
    return events
