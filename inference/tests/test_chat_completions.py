"""/v1/chat/completions and /v1/models through the official openai SDK (strict validation),
against a live gateway and a fake upstream, with bodies checked against OpenAI's spec."""

from __future__ import annotations

import time

import httpx
import openai
import orjson
import pytest
from django.db import close_old_connections

from inference import services
from inference.models import Provider, UsageRecord
from inference.tests.fake_upstream import FakeUpstream
from organizations.models import ApiKey
from organizations.tests.factories import make_api_key
from tests.fixtures import register
from tests.live_server import LiveGateway
from tests.openai_spec import assert_valid

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "Say hello to the test"}]


def _usage_rows(expected: int, timeout: float = 5.0) -> list[UsageRecord]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        close_old_connections()
        rows = list(UsageRecord.objects.order_by("pk"))
        if len(rows) >= expected:
            return rows
        time.sleep(0.05)
    return list(UsageRecord.objects.order_by("pk"))


def _raw_sse(gateway: LiveGateway, key: str, body: dict) -> list[bytes]:
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        return [line for line in response.iter_lines() if line]  # type: ignore[misc]


def test_non_stream_is_relayed_and_valid(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream, project_key
) -> None:
    completion = sdk.chat.completions.create(
        model="fake-model", messages=MESSAGES, extra_body={"vendor_knob": 7}
    )
    assert completion.choices[0].message.content == "Hello from the fake model."
    assert completion.usage is not None
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 6 == 11
    assert_valid("CreateChatCompletionResponse", completion.model_dump(mode="json", exclude_unset=True))
    forwarded = upstream.requests[-1]
    assert forwarded["body"]["vendor_knob"] == 7  # unknown fields kept
    assert (
        forwarded["headers"]["authorization"] == "Bearer upstream-secret-key"
    )  # provider key added server-side
    assert project_key[1] not in str(forwarded["headers"])  # the client's key never goes upstream
    assert forwarded["headers"]["x-request-id"]
    [row] = _usage_rows(1)
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (5, 6, 11)
    assert row.outcome == "success"
    assert row.api_key_id == project_key[0].pk
    assert row.project_id == project_key[0].project_id
    assert row.provider_id == provider.pk
    assert row.request_id == forwarded["headers"]["x-request-id"]


def test_stream_relays_chunks_and_hides_usage_unless_asked(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream, live_gateway: LiveGateway, project_key
) -> None:
    chunks = list(sdk.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True))
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake model."
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)  # no usage-only chunk
    # The gateway asked the upstream for usage anyway, and recorded it.
    assert upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    [row] = _usage_rows(1)
    assert row.total_tokens == 11
    assert row.stream
    assert row.time_to_first_token_ms is not None
    lines = _raw_sse(
        live_gateway, project_key[1], {"model": "fake-model", "messages": MESSAGES, "stream": True}
    )
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        assert_valid("CreateChatCompletionStreamResponse", orjson.loads(line.removeprefix("data: ")))


def test_stream_include_usage(sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="fake-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.total_tokens == 11
    assert_valid("CreateChatCompletionStreamResponse", last.model_dump(mode="json", exclude_unset=True))


def test_parallel_tool_calls_streamed_and_joined(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    upstream.behaviour["fake-model"] = "tool_calls"
    tools = [
        {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
        for name in ("get_weather", "get_time")
    ]
    with sdk.chat.completions.stream(model="fake-model", messages=MESSAGES, tools=tools) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_weather", "get_weather", '{"city": "Paris"}'),
        ("call_time", "get_time", '{"tz": "CET"}'),
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    assert upstream.requests[-1]["body"]["tools"] == tools


def test_reasoning_content_passes_through(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream, live_gateway: LiveGateway, project_key
) -> None:
    upstream.behaviour["fake-reasoner"] = "reasoning"
    completion = sdk.chat.completions.create(model="fake-reasoner", messages=MESSAGES)
    assert completion.choices[0].message.model_extra == {"reasoning_content": "Let me think."}
    lines = _raw_sse(
        live_gateway, project_key[1], {"model": "fake-reasoner", "messages": MESSAGES, "stream": True}
    )
    reasoning = [
        orjson.loads(line.removeprefix("data: "))["choices"][0]["delta"].get("reasoning_content")
        for line in lines[:-1]
    ]
    assert "".join(part for part in reasoning if part) == "Let me think."


def test_finish_reason_length(sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream) -> None:
    upstream.behaviour["fake-model"] = "length"
    completion = sdk.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=1)
    assert completion.choices[0].finish_reason == "length"
    chunks = list(
        sdk.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=1, stream=True)
    )
    assert chunks[-1].choices[0].finish_reason == "length"


def test_unknown_model_is_404(sdk: openai.OpenAI, provider: Provider) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    assert_valid("ErrorResponse", caught.value.response.json())


def test_bad_bodies_are_400(live_gateway: LiveGateway, provider: Provider, project_key) -> None:
    headers = {"Authorization": f"Bearer {project_key[1]}"}
    url = f"{live_gateway.url}/v1/chat/completions"
    cases = [
        (b"{not json", None),
        (b"[1,2]", None),
        (orjson.dumps({"messages": MESSAGES}), "model"),
        (orjson.dumps({"model": "fake-model"}), "messages"),
        (orjson.dumps({"model": "fake-model", "messages": MESSAGES, "stream": "yes"}), "stream"),
    ]
    for body, param in cases:
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == 400, body
        assert response.json()["error"]["param"] == param
        assert_valid("ErrorResponse", response.json())


def test_upstream_500_is_502_and_fails_over_to_a_healthy_twin(
    sdk: openai.OpenAI, make_upstream, upstream: FakeUpstream, provider: Provider
) -> None:
    upstream.behaviour["fake-model"] = "error_500"
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert_valid("ErrorResponse", caught.value.response.json())
    # A twin serving the same model: traffic moves there, including the retry before the first byte.
    twin = make_upstream(["fake-model"])
    register(twin, name="twin")
    upstream.behaviour["fake-model"] = "error_500"
    for _ in range(4):
        completion = sdk.chat.completions.create(model="fake-model", messages=MESSAGES)
        assert completion.choices[0].message.content == "Hello from the fake model."
    assert len(twin.requests) >= 4


def test_upstream_400_keeps_its_message(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    upstream.behaviour["fake-model"] = "error_400"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert "maximum context length" in caught.value.message
    assert caught.value.code == "context_length_exceeded"


def test_upstream_down_is_an_error_not_a_hang(
    sdk: openai.OpenAI, upstream: FakeUpstream, provider: Provider
) -> None:
    upstream.stop()
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert caught.value.status_code == 502
    # The only provider of the model stays in rotation (the health poll decides it is down): the
    # next call tries it again and fails the same way, not with 503 after one bad call.
    with pytest.raises(openai.APIStatusError) as again:
        sdk.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert again.value.status_code == 502


def test_cut_mid_stream_becomes_an_error_event(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    upstream.behaviour["fake-model"] = "cut_mid_stream"
    received: list[object] = []
    stream = sdk.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as caught:
        received.extend(stream)
    assert received  # the first chunks arrived before the cut
    assert "closed the stream early" in str(caught.value.message)


def test_slow_upstream_times_out_with_504(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream, settings
) -> None:
    settings.UPSTREAM_FIRST_BYTE_TIMEOUT = 0.5
    upstream.behaviour["fake-model"] = "slow_first_byte"
    upstream.delay = 3
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert caught.value.status_code == 504


def test_client_disconnect_closes_the_upstream_request(
    live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key
) -> None:
    upstream.behaviour["fake-model"] = "slow_stream"
    upstream.delay = 0.05
    body = {"model": "fake-model", "messages": MESSAGES, "stream": True}
    with httpx.stream(
        "POST",
        f"{live_gateway.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {project_key[1]}"},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                break  # one chunk, then hang up
    assert upstream.wait_for(lambda: upstream.disconnects == 1, timeout=5)
    rows = _usage_rows(1)
    assert rows[-1].outcome == "client_disconnected"


@pytest.mark.parametrize("key_type", [ApiKey.Type.ADMIN])
def test_admin_key_is_refused(live_gateway: LiveGateway, provider: Provider, key_type: str) -> None:
    _, raw = make_api_key(key_type=key_type)
    sdk = openai.OpenAI(
        base_url=f"{live_gateway.url}/v1", api_key=raw, max_retries=0, _strict_response_validation=True
    )
    with pytest.raises(openai.PermissionDeniedError):
        sdk.chat.completions.create(model="fake-model", messages=MESSAGES)
    with pytest.raises(openai.PermissionDeniedError):
        sdk.models.list()


def test_missing_or_unknown_key_is_401(live_gateway: LiveGateway, provider: Provider) -> None:
    response = httpx.post(
        f"{live_gateway.url}/v1/chat/completions", json={"model": "fake-model", "messages": MESSAGES}
    )
    assert response.status_code == 401
    assert_valid("ErrorResponse", response.json())
    sdk = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key="sk-project_" + "x" * 48, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="fake-model", messages=MESSAGES)


def test_models_list_and_retrieve(sdk: openai.OpenAI, provider: Provider) -> None:
    page = sdk.models.list()
    assert sorted(m.id for m in page.data) == ["fake-model", "fake-reasoner"]
    assert_valid("ListModelsResponse", page.model_dump(mode="json"))
    model = sdk.models.retrieve("fake-model")
    assert model.owned_by == "fake"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("nope")


def test_dead_provider_leaves_models_after_polling_and_traffic_moves_to_twin(
    sdk: openai.OpenAI, make_upstream, settings
) -> None:
    settings.MODEL_HEALTH_FAILURE_THRESHOLD = 2
    dying = make_upstream(["shared-model", "only-on-dying"])
    twin = make_upstream(["shared-model"])
    dying_provider = register(dying, name="dying")
    register(twin, name="twin")
    assert {m.id for m in sdk.models.list().data} == {"shared-model", "only-on-dying"}
    dying.down = True
    services.provider_check(provider_id=dying_provider.pk, force=True)
    dying_provider.refresh_from_db()
    assert dying_provider.healthy  # one failure is not enough
    services.provider_check(provider_id=dying_provider.pk, force=True)
    dying_provider.refresh_from_db()
    assert not dying_provider.healthy
    assert "503" in dying_provider.last_error
    assert {m.id for m in sdk.models.list().data} == {"shared-model"}
    before = len(dying.requests)
    for _ in range(5):
        sdk.chat.completions.create(model="shared-model", messages=MESSAGES)
    assert len(dying.requests) == before
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="only-on-dying", messages=MESSAGES)
    assert caught.value.status_code == 503
    # One successful poll brings it back.
    dying.down = False
    services.provider_check(provider_id=dying_provider.pk, force=True)
    assert {m.id for m in sdk.models.list().data} == {"shared-model", "only-on-dying"}


def test_polling_picks_up_added_and_removed_models(make_upstream) -> None:
    upstream = make_upstream(["a", "b"])
    provider = register(upstream)
    upstream.models = ["b", "c"]
    services.provider_check(provider_id=provider.pk, force=True)
    assert set(provider.models.filter(available=True).values_list("model_id", flat=True)) == {"b", "c"}


def test_health_check_runs_once_per_interval_across_workers(make_upstream) -> None:
    upstream = make_upstream(["a"])
    provider = services.provider_create(name="p", base_url=upstream.base_url)
    first = services.provider_check(provider_id=provider.pk)
    second = services.provider_check(provider_id=provider.pk)  # another worker, same interval
    assert first is not None
    assert second is None
    assert len([r for r in upstream.requests if r["path"] == "/v1/models"]) == 1


def test_provider_key_is_encrypted_at_rest(provider: Provider) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key_encrypted FROM inference_provider")
        [(stored,)] = cursor.fetchall()
    assert "upstream-secret-key" not in stored


def test_providers_of_one_model_share_the_load(make_upstream, project_key, live_gateway: LiveGateway) -> None:
    first, second = make_upstream(["fake-model"]), make_upstream(["fake-model"])
    register(first, name="first")
    register(second, name="second")
    for _ in range(30):
        response = httpx.post(
            f"{live_gateway.url}/v1/chat/completions",
            json={"model": "fake-model", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {project_key[1]}"},
        )
        assert response.status_code == 200
    served = (len(first.requests) - 1, len(second.requests) - 1)  # minus each one's health check
    assert sum(served) == 30
    assert min(served) >= 5, served  # both take traffic (chance of < 5 of 30 is about 1 in 10^4)
