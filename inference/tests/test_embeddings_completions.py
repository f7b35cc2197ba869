"""`/v1/embeddings` and `/v1/completions` through the official SDK (strict validation), on the
same hot path as chat: the body forwarded, usage rows written with their endpoint, models that
cannot embed refused before any upstream is called."""

from __future__ import annotations

import base64
import struct
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from inference.models import Provider, UsageRecord
from inference.tests.fake_upstream import FakeUpstream, embedding_vector
from tests.fixtures import register
from tests.live_server import LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)


def _rows(upstream: FakeUpstream, count: int, endpoint: str) -> list[UsageRecord]:
    """Poll until the batch writer stored the rows (it writes off the request path)."""
    assert upstream.wait_for(
        lambda: UsageRecord.objects.filter(endpoint=endpoint).count() >= count, timeout=10
    ), f"no {endpoint} usage rows"
    return list(UsageRecord.objects.filter(endpoint=endpoint).order_by("pk"))


@pytest.fixture
def embedding_upstream(make_upstream: Any) -> FakeUpstream:
    upstream: FakeUpstream = make_upstream(["fake-embed", "fake-model"])
    upstream.capabilities = {"fake-embed": ["embedding"], "fake-model": ["completion", "tools"]}
    register(upstream)
    return upstream


def test_embeddings_float_and_base64_agree(sdk: openai.OpenAI, embedding_upstream: FakeUpstream) -> None:
    as_float = sdk.embeddings.create(model="fake-embed", input="hello world", encoding_format="float")
    # Without encoding_format the SDK asks for base64 and decodes the answer itself, after its
    # strict validation would see a string where a list goes: that one client is not strict.
    lenient = openai.OpenAI(base_url=sdk.base_url, api_key=sdk.api_key, max_retries=0)
    as_base64 = lenient.embeddings.create(model="fake-embed", input="hello world")
    expected = embedding_vector("hello world", 8)
    assert as_float.data[0].embedding == expected
    assert as_base64.data[0].embedding == expected
    assert [r["body"].get("encoding_format") for r in embedding_upstream.requests[-2:]] == ["float", "base64"]
    assert as_float.usage.prompt_tokens == 2


def test_raw_base64_is_little_endian_float32(
    live_gateway: LiveGateway, embedding_upstream: FakeUpstream, project_key: Any
) -> None:
    response = httpx.post(
        f"{live_gateway.url}/v1/embeddings",
        json={"model": "fake-embed", "input": "abc", "encoding_format": "base64", "dimensions": 4},
        headers={"Authorization": f"Bearer {project_key[1]}"},
    )
    assert response.status_code == 200, response.text
    packed = base64.b64decode(response.json()["data"][0]["embedding"])
    assert list(struct.unpack("<4f", packed)) == embedding_vector("abc", 4)
    assert embedding_upstream.requests[-1]["body"]["dimensions"] == 4  # forwarded


def test_batch_and_token_inputs_record_usage(sdk: openai.OpenAI, embedding_upstream: FakeUpstream) -> None:
    batch = sdk.embeddings.create(
        model="fake-embed", input=["one two", "three", "four five six"], dimensions=3, encoding_format="float"
    )
    assert [item.index for item in batch.data] == [0, 1, 2]
    assert all(len(item.embedding) == 3 for item in batch.data)
    tokens = sdk.embeddings.create(model="fake-embed", input=[[1, 2, 3], [4, 5]], encoding_format="float")
    assert tokens.data[1].embedding == embedding_vector([4, 5], 8)
    assert embedding_upstream.requests[-1]["body"]["input"] == [[1, 2, 3], [4, 5]]
    rows = _rows(embedding_upstream, 2, "embeddings")
    assert [(row.prompt_tokens, row.total_tokens, row.completion_tokens) for row in rows] == [
        (6, 6, 0),
        (5, 5, 0),
    ]
    assert all(row.model == "fake-embed" and row.outcome == "success" and not row.stream for row in rows)


def test_a_model_that_cannot_embed_is_refused(sdk: openai.OpenAI, embedding_upstream: FakeUpstream) -> None:
    before = len(embedding_upstream.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model="fake-model", input="hello", encoding_format="float")
    assert refused.value.status_code == 400
    assert refused.value.code == "model_not_supported"
    assert refused.value.param == "model"
    with pytest.raises(openai.BadRequestError) as no_text:
        sdk.completions.create(model="fake-embed", prompt="hello")
    assert no_text.value.code == "model_not_supported"
    assert len(embedding_upstream.requests) == before  # refused here, not by the model server


def test_configured_endpoints_when_the_upstream_does_not_say(sdk: openai.OpenAI, make_upstream: Any) -> None:
    upstream: FakeUpstream = make_upstream(["bge-small", "llama"])
    provider = register(upstream)
    from inference import services

    services.provider_update(provider=provider, model_endpoints={"bge-*": ["embeddings"]})
    assert sdk.embeddings.create(model="bge-small", input="x", encoding_format="float").data
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="bge-small", messages=[{"role": "user", "content": "x"}])
    assert sdk.embeddings.create(
        model="llama", input="x", encoding_format="float"
    ).data  # unmatched: every endpoint


def test_bad_embedding_input_is_a_400_with_param(
    live_gateway: LiveGateway, provider: Provider, project_key: Any
) -> None:
    for body, param in (
        ({"model": "fake-model"}, "input"),
        ({"model": "fake-model", "input": ""}, "input"),
        ({"model": "fake-model", "input": [1, "a"]}, "input.0"),
        ({"model": "fake-model", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "fake-model", "input": "x", "dimensions": 0}, "dimensions"),
    ):
        response = httpx.post(
            f"{live_gateway.url}/v1/embeddings",
            json=body,
            headers={"Authorization": f"Bearer {project_key[1]}"},
        )
        assert response.status_code == 400, body
        assert response.json()["error"]["param"] == param, body


def test_completions_non_stream_forwards_echo_suffix_logprobs(
    sdk: openai.OpenAI, embedding_upstream: FakeUpstream
) -> None:
    answer = sdk.completions.create(
        model="fake-model", prompt="Say hi", echo=True, suffix="!", logprobs=2, max_tokens=16
    )
    assert answer.choices[0].text == "Say hiHello from the fake model.!"
    assert answer.choices[0].logprobs is not None
    assert answer.choices[0].logprobs.tokens == ["Hello", " from", " the", " fake", " model", "."]
    sent = embedding_upstream.requests[-1]["body"]
    assert (sent["echo"], sent["suffix"], sent["logprobs"]) == (True, "!", 2)
    assert answer.usage is not None
    assert answer.usage.total_tokens == 8
    row = _rows(embedding_upstream, 1, "completions")[0]
    assert (row.prompt_tokens, row.completion_tokens, row.stream) == (2, 6, False)


def test_completions_stream_with_and_without_usage(
    sdk: openai.OpenAI, embedding_upstream: FakeUpstream
) -> None:
    # The SDK types a completion's finish_reason as never null, yet streams (OpenAI's too) carry
    # null until the last chunk: strict validation would refuse every chunk but the last.
    sdk = openai.OpenAI(base_url=sdk.base_url, api_key=sdk.api_key, max_retries=0)
    chunks = list(
        sdk.completions.create(
            model="fake-model", prompt="one two three", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from the fake model."
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 3
    quiet = list(sdk.completions.create(model="fake-model", prompt=["a b"], stream=True))
    assert all(chunk.usage is None for chunk in quiet)  # not asked for: not passed on
    assert embedding_upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    rows = _rows(embedding_upstream, 2, "completions")
    assert [(row.prompt_tokens, row.completion_tokens, row.stream) for row in rows] == [
        (3, 6, True),
        (2, 6, True),
    ]


def test_wrong_method_and_paths_below_the_routes(live_gateway: LiveGateway) -> None:
    response = httpx.get(f"{live_gateway.url}/v1/embeddings")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    below = httpx.post(f"{live_gateway.url}/v1/completions/extra", json={})
    assert below.status_code == 404
    assert below.json()["error"]["code"] == "unknown_url"


def test_no_database_read_per_call_once_warm(
    sdk: openai.OpenAI,
    embedding_upstream: FakeUpstream,
    project_key: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every thread's statements are counted (the server runs in this process): once the key
    and the routing table are cached, a call reads nothing from the database; its usage row is
    written later, in a batch."""
    if not settings.REDIS_URL:
        pytest.skip("without Redis the key cache is per process and refills from the database each second")
    from django.db.backends import utils

    from organizations.models import Project

    # A caller with an allow-list and a budget: both come with the cached key entry.
    Project.objects.filter(pk=project_key[0].project_id).update(
        allowed_models=["fake-*"], monthly_budget=Decimal(100)
    )
    sdk.embeddings.create(model="fake-embed", input="warm", encoding_format="float")
    sdk.completions.create(model="fake-model", prompt="warm")
    settings.MODEL_REGISTRY_REFRESH_SECONDS = 60  # the table just loaded stays: no reload mid-test
    reads: list[str] = []
    original = utils.CursorWrapper._execute

    def counting(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql.lstrip().upper().startswith("SELECT"):
            reads.append(sql)
        return original(self, sql, *args, **kwargs)

    monkeypatch.setattr(utils.CursorWrapper, "_execute", counting)
    for index in range(5):
        sdk.embeddings.create(model="fake-embed", input=f"text {index}", encoding_format="float")
        sdk.completions.create(model="fake-model", prompt=f"prompt {index}")
    assert reads == []
    UsageRecord.objects.exists()  # the counter sees reads: the empty list above is not blindness
    assert len(reads) == 1


def test_embeddings_fail_over_to_another_provider(sdk: openai.OpenAI, make_upstream: Any) -> None:
    broken: FakeUpstream = make_upstream(["shared-embed"])
    working: FakeUpstream = make_upstream(["shared-embed"])
    for upstream in (broken, working):
        upstream.capabilities = {"shared-embed": ["embedding"]}
    register(broken, name="broken")
    healthy = register(working, name="working")
    broken.down = True  # answers 503 from now on; the health poll has not noticed yet
    for index in range(10):
        answer = sdk.embeddings.create(model="shared-embed", input=f"x {index}", encoding_format="float")
        assert answer.data[0].embedding == embedding_vector(f"x {index}", 8)
    assert any(r["path"] == "/v1/embeddings" for r in broken.requests)  # tried, then failed over
    rows = _rows(working, 10, "embeddings")
    assert {row.provider_id for row in rows if row.outcome == "success"} == {healthy.pk}
