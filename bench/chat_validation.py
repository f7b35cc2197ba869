"""What the chat request check (inference.chat_validation) costs per request, on typical bodies.

    .venv/bin/python bench/chat_validation.py

Prints microseconds per check for each body (best of five timeit runs): a one-line chat, a
20-turn conversation with a system prompt, an agent turn with 8 tools and tool calls/results,
and a multimodal message. The hot path's whole gateway overhead is in bench/run.py; this is
the part the structural check adds to it.
"""

from __future__ import annotations

import os
import sys
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

import django

django.setup()

from inference.chat_validation import check_chat_request  # noqa: E402

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}


def bodies() -> dict[str, dict[str, Any]]:
    chat = [{"role": "system", "content": "You are helpful."}]
    for turn in range(10):
        chat += [
            {"role": "user", "content": f"Question {turn} " * 20},
            {"role": "assistant", "content": "Answer " * 40},
        ]
    agent: list[dict[str, Any]] = [{"role": "user", "content": "Plan my trip."}]
    for step in range(4):
        call = {
            "id": f"call_{step}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
        agent += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_{step}", "content": "sunny " * 30},
        ]
    return {
        "one message": {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
        "20 turns": {"model": "m", "messages": chat, "temperature": 0.7, "max_tokens": 512, "stream": True},
        "agent, 8 tools": {
            "model": "m",
            "messages": agent,
            "tools": [{**TOOL, "function": {**TOOL["function"], "name": f"tool_{i}"}} for i in range(8)],
            "tool_choice": "auto",
            "parallel_tool_calls": True,
            "temperature": 0.2,
        },
        "multimodal": {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    ],
                }
            ],
        },
    }


def main() -> None:
    for name, body in bodies().items():
        runs = timeit.repeat(lambda body=body: check_chat_request(body), number=20_000, repeat=5)
        print(f"{name:16} {min(runs) / 20_000 * 1e6:7.2f} µs per request")


if __name__ == "__main__":
    main()
