"""Cross-worker signals: Channels' Redis layers against the plain Redis the gateway uses.

    REDIS_URL=redis://127.0.0.1:6379/15 .venv/bin/python bench/channel_layer.py [--calls 2000]

Needs a Redis it may write to (use a spare database). Two questions, one per signal:

1. Cancel (responses.events): a cancel can come before the worker that runs the response has
   started listening (a queued background run, a worker between two polls). Does the signal
   survive that? A group message sent before `group_add` is gone; a Redis key is still there.
2. MCP resource updates (mcp_server.sessions): published from sync code (a `transaction.on_commit`
   in a Django view or a Celery worker). What does one publish cost there? `group_send` is a
   coroutine, so sync code pays `async_to_sync` on top of the Redis round trip.
"""

# ruff: noqa: E402 -- Django is set up before the imports that read its settings
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

import django

django.setup()

import redis
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

URL = os.environ.get("REDIS_URL", "")


def _layers() -> dict[str, object]:
    return {
        "RedisChannelLayer": RedisChannelLayer(hosts=[URL]),
        "RedisPubSubChannelLayer": RedisPubSubChannelLayer(hosts=[URL]),
    }


async def _signal_sent_before_listening(layer: object) -> bool:
    """group_send, then group_add and receive: was the signal delivered?"""
    await layer.group_send("cancel-resp_1", {"type": "response.cancel"})  # type: ignore[attr-defined]
    channel = await layer.new_channel()  # type: ignore[attr-defined]
    await layer.group_add("cancel-resp_1", channel)  # type: ignore[attr-defined]
    try:
        async with asyncio.timeout(1.0):
            await layer.receive(channel)  # type: ignore[attr-defined]
        return True
    except TimeoutError:
        return False
    finally:
        await layer.group_discard("cancel-resp_1", channel)  # type: ignore[attr-defined]


def _flag_set_before_listening(client: redis.Redis) -> bool:
    client.set("bench:cancel:resp_1", b"1", ex=60)
    try:
        return bool(client.exists("bench:cancel:resp_1"))
    finally:
        client.delete("bench:cancel:resp_1")


def _sync_publish_us(publish: object, calls: int) -> tuple[float, float]:
    """(wall µs, CPU µs) per call of `publish()` from sync code."""
    for _ in range(50):
        publish()  # type: ignore[operator]
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        publish()  # type: ignore[operator]
    return (time.perf_counter() - wall) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6


def main(calls: int) -> None:
    if not URL:
        sys.exit("REDIS_URL is not set")
    client = redis.Redis.from_url(URL)
    print("1. A signal sent before the receiver listens (the cancel of a run not yet started):")
    print(f"   Redis key (responses.events today):        seen = {_flag_set_before_listening(client)}")
    for name, layer in _layers().items():
        seen = async_to_sync(_signal_sent_before_listening)(layer)
        print(f"   channels_redis {name + ':':<28} seen = {seen}")

    print(f"\n2. One publish from sync code ({calls} calls; µs per call, wall / CPU of this process):")
    wall, cpu = _sync_publish_us(lambda: client.publish("bench:resource-updated", "conversation://c"), calls)
    print(f"   redis-py PUBLISH (mcp_server.sessions today):      {wall:8.1f} / {cpu:8.1f}")
    for name, layer in _layers().items():
        send = async_to_sync(layer.group_send)  # type: ignore[attr-defined]
        wall, cpu = _sync_publish_us(
            lambda send=send: send(
                "mcp-resource-updated", {"type": "resource.updated", "uri": "conversation://c"}
            ),
            calls,
        )
        print(f"   async_to_sync(group_send), {name + ':':<24}{wall:8.1f} / {cpu:8.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    main(parser.parse_args().calls)
