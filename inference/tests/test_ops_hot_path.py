"""Operations on the chat hot path, over real HTTP: rate limits (429 with OpenAI's headers, token
limits from recorded usage, one limit shared by two uvicorn workers) and the metrics it feeds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.mmap_dict import MmapedDict

from gateway import metrics
from gateway.redis import sync_client
from inference.models import Provider
from inference.tests.fake_upstream import FakeUpstream
from organizations import ratelimits, services
from organizations.models import ApiKey
from organizations.tests.factories import make_api_key, make_project
from tests.live_server import GatewayProcess, LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "Say hello"}]}  # 2 + 6 tokens


@pytest.fixture(autouse=True)
def _fresh_counters() -> None:
    ratelimits._local.clear()
    client = sync_client()
    if client is not None:
        for name in client.scan_iter("rl:*"):
            client.delete(name)


def limited_key(**limits: int) -> tuple[ApiKey, str]:
    project = make_project()
    services.project_rate_limit_set(project=project, model="fake-model", actor=services.SYSTEM, **limits)
    return make_api_key(project=project)


def chat(url: str, key: str, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json={**BODY, **extra},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_requests_limit_headers_and_429(live_gateway: LiveGateway, provider: Provider) -> None:
    _, raw = limited_key(max_requests_per_1_minute=2)
    first, second = chat(live_gateway.url, raw), chat(live_gateway.url, raw)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")

    refused = chat(live_gateway.url, raw)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert refused.headers["x-request-id"]

    sdk = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=raw, max_retries=0)
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.chat.completions.create(**BODY)  # type: ignore[call-overload]
    assert raised.value.status_code == 429
    # a stream is refused before its first byte, with the same answer
    assert chat(live_gateway.url, raw, stream=True).status_code == 429


def _tokens_recorded(key: ApiKey, expected: int) -> None:
    """Usage is counted when the call is recorded, just after the answer: wait for it."""
    assert key.project is not None
    rule = (f"p{key.project.pk}", "fake-model", 0, 10, 0)
    client = sync_client()
    deadline = time.monotonic() + 5
    total = 0
    while time.monotonic() < deadline:
        if client is not None:
            total = sum(int(v) for v in client.hvals(ratelimits._keys(key.organization.public_id, rule)[1]))
        else:  # the per-process fallback, in this process (the live gateway runs here)
            total = sum(ratelimits._local._buckets.get(ratelimits._keys("", rule)[1], {}).values())
        if total >= expected:
            return
        time.sleep(0.02)
    pytest.fail(f"{total} tokens recorded, {expected} expected")


def test_token_limit_refuses_after_recorded_usage(live_gateway: LiveGateway, provider: Provider) -> None:
    key, raw = limited_key(max_tokens_per_1_minute=10)
    first = chat(live_gateway.url, raw)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-remaining-tokens"] == "10"
    assert first.json()["usage"]["total_tokens"] == 8
    _tokens_recorded(key, 8)
    second = chat(live_gateway.url, raw, stream=True)  # 8 < 10: admitted; its usage comes from the stream
    assert second.status_code == 200
    assert second.headers["x-ratelimit-remaining-tokens"] == "2"
    assert second.text.rstrip().endswith("data: [DONE]")
    _tokens_recorded(key, 16)
    refused = chat(live_gateway.url, raw)
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert "tokens per min" in refused.json()["error"]["message"]


def test_no_limits_no_headers_and_metrics_count(live_gateway: LiveGateway, provider: Provider) -> None:
    key, raw = make_api_key()
    project = key.project
    assert project is not None
    before = metrics.render().decode()
    answer = chat(live_gateway.url, raw)
    assert answer.status_code == 200
    assert not [name for name in answer.headers if name.startswith("x-ratelimit")]
    streamed = chat(live_gateway.url, raw, stream=True)
    assert streamed.status_code == 200

    from gateway.tests.test_metrics import value

    ops = "gen_ai_client_operation_duration_seconds_count"
    labels = {"gen_ai_request_model": "fake-model", "gen_ai_provider_name": provider.public_id}
    route = {"http_route": "/v1/chat/completions", "http_response_status_code": "200"}
    count = "http_server_request_duration_seconds_count"

    def grew(text: str, name: str, **wanted: str) -> float:
        return (value(text, name, **wanted) or 0) - (value(before, name, **wanted) or 0)

    # A stream is counted when the server has finished it, which may be just after the client
    # read its last byte: wait for it.
    deadline = time.monotonic() + 5
    while True:
        after = metrics.render().decode()
        if grew(after, count, **route) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert value(after, "gen_ai_client_token_usage_total", project_id=project.public_id) == 16  # 2 x (2 + 6)
    assert grew(after, ops, **labels) == 2
    assert grew(after, "gen_ai_server_time_to_first_token_seconds_count", **labels) == 1  # streams only
    assert grew(after, count, **route) == 2
    assert value(after, "gateway_streams_in_flight") == value(before, "gateway_streams_in_flight")


# --- Two workers ----------------------------------------------------------------------------------


def _chat_requests_by_worker(directory: Path) -> dict[int, float]:
    """Chat requests each worker counted, read from its own multi-process metrics file."""
    counted: dict[int, float] = {}
    for path in directory.glob("histogram_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, _ = json.loads(key)
            # files keep each bucket's own count (not cumulative, no _count): their sum is the count
            if sample.endswith("_bucket") and labels.get("http_route") == "/v1/chat/completions":
                counted[pid] = counted.get(pid, 0) + value
    return counted


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[GatewayProcess, Path]]:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    server = GatewayProcess(
        database=True,
        workers=2,
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "MODEL_REGISTRY_REFRESH_SECONDS": "0"},
        needs_redis=True,
    )
    server.start(ready=directory)
    yield server, directory
    server.stop()


def test_requests_limit_holds_across_two_workers(
    two_workers: tuple[GatewayProcess, Path], upstream: FakeUpstream, provider: Provider
) -> None:
    server, directory = two_workers
    limit = 5
    for _attempt in range(3):  # a fresh key per attempt, until both workers served some of them
        seen_before = _chat_requests_by_worker(directory)
        _, raw = limited_key(max_requests_per_1_minute=limit)
        with ThreadPoolExecutor(max_workers=8) as pool:  # concurrent, each on its own connection
            statuses = [response.status_code for response in pool.map(chat, [server.url] * 12, [raw] * 12)]
        assert sorted(statuses) == [200] * limit + [429] * (12 - limit), server.output()
        served = {
            pid: count - seen_before.get(pid, 0)
            for pid, count in _chat_requests_by_worker(directory).items()
            if count > seen_before.get(pid, 0)
        }
        if len(served) == 2:
            return
    pytest.fail(f"the requests never reached both workers: {served}")


def test_request_id_reaches_audit_entries_through_the_asgi_server(live_gateway: LiveGateway) -> None:
    from organizations.models import AuditLogEntry

    project = make_project()
    _, admin = make_api_key(org=project.organization, key_type=ApiKey.Type.ADMIN)
    changed = httpx.post(
        f"{live_gateway.url}/v1/organization/projects/{project.public_id}/rate_limits/rl_fake-model",
        json={"max_requests_per_1_minute": 3},
        headers={"Authorization": f"Bearer {admin}", "X-Request-ID": "req-audit-through-asgi"},
        timeout=10,
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["x-request-id"] == "req-audit-through-asgi"
    entry = AuditLogEntry.objects.get(action="rate_limit.created", project_id=project.public_id)
    assert entry.request_id == "req-audit-through-asgi"
