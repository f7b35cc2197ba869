"""POST /v1/responses (non-stream), retrieve, delete, input_items: through the strict SDK and as raw
bodies checked against OpenAI's spec, against a live gateway and a fake upstream."""

from __future__ import annotations

import time

import openai
import pytest
from django.db import close_old_connections

from inference.models import Provider, UsageRecord
from inference.tests.fake_upstream import FakeUpstream
from organizations.tests.factories import make_api_key
from responses.models import Response
from responses.tests.helpers import get, post
from tests.live_server import LiveGateway
from tests.openai_spec import assert_valid

pytestmark = pytest.mark.django_db(transaction=True)


def _chat_body(upstream: FakeUpstream) -> dict:
    chat = [r for r in upstream.requests if r["path"] == "/v1/chat/completions"]
    return chat[-1]["body"]


def test_string_input_through_the_sdk(sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream) -> None:
    response = sdk.responses.create(
        model="fake-model",
        input="Say hello",
        instructions="Be brief.",
        metadata={"topic": "greeting"},
        temperature=0.5,
        max_output_tokens=50,
    )
    assert response.status == "completed"
    assert response.output_text == "Hello from the fake model."
    assert response.id.startswith("resp_")
    assert response.output[0].id.startswith("msg_")
    assert response.metadata == {"topic": "greeting"}
    assert response.instructions == "Be brief."
    assert response.usage is not None
    assert response.usage.output_tokens == 6
    assert response.usage.total_tokens == response.usage.input_tokens + 6
    assert response.completed_at is not None
    body = _chat_body(upstream)
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert body["stream"] is True
    assert body["temperature"] == 0.5
    assert body["max_tokens"] == 50


def test_raw_body_matches_the_spec_and_retrieve_equals_create(
    live_gateway: LiveGateway, provider: Provider, project_key
) -> None:
    created = post(live_gateway, project_key[1], "/responses", {"model": "fake-model", "input": "Hi"})
    assert created.status_code == 200
    body = created.json()
    assert_valid("Response", body)
    assert body["object"] == "response"
    assert body["output"][0]["content"][0] == {
        "type": "output_text",
        "text": "Hello from the fake model.",
        "annotations": [],
        "logprobs": [],
    }
    assert body["usage"]["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    fetched = get(live_gateway, project_key[1], f"/responses/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == body


def test_message_list_and_typed_inputs(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    sdk.responses.create(
        model="fake-model",
        input=[
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How are you?"},
        ],
    )
    assert _chat_body(upstream)["messages"] == [
        {"role": "system", "content": "Answer in English."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]
    typed = sdk.responses.create(
        model="fake-model",
        input=[
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is in this image?"},
                    {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
                ],
            }
        ],
    )
    assert typed.status == "completed"
    assert _chat_body(upstream)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
            ],
        }
    ]
    items = sdk.responses.input_items.list(typed.id)
    assert [item.type for item in items.data] == ["message"]
    assert items.data[0].id.startswith("msg_")


def test_input_items_are_paginated_newest_first(
    sdk: openai.OpenAI, live_gateway: LiveGateway, provider: Provider, project_key
) -> None:
    response = sdk.responses.create(
        model="fake-model",
        input=[{"role": "user", "content": f"message {n}"} for n in range(5)],
    )
    raw = get(live_gateway, project_key[1], f"/responses/{response.id}/input_items", limit=2)
    assert raw.status_code == 200
    page = raw.json()
    assert_valid("ResponseItemList", page)
    assert [item["content"][0]["text"] for item in page["data"]] == ["message 4", "message 3"]
    assert page["has_more"] is True
    texts = [item.content[0].text for item in sdk.responses.input_items.list(response.id, limit=2)]
    assert texts == [f"message {n}" for n in (4, 3, 2, 1, 0)]  # the SDK pages through `after`
    ascending = sdk.responses.input_items.list(response.id, order="asc")
    assert [item.content[0].text for item in ascending.data] == [f"message {n}" for n in range(5)]


def test_delete_then_404(
    sdk: openai.OpenAI, live_gateway: LiveGateway, provider: Provider, project_key
) -> None:
    response = sdk.responses.create(model="fake-model", input="Hi")
    deleted = live_gateway_delete(live_gateway, project_key[1], response.id)
    assert deleted.status_code == 200
    assert deleted.json() == {"id": response.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.retrieve(response.id)
    assert caught.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(response.id)


def live_gateway_delete(gateway: LiveGateway, key: str, response_id: str):  # type: ignore[no-untyped-def]
    import httpx

    return httpx.delete(
        f"{gateway.url}/v1/responses/{response_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def test_store_false_is_not_kept(sdk: openai.OpenAI, provider: Provider) -> None:
    response = sdk.responses.create(model="fake-model", input="Hi", store=False)
    assert response.status == "completed"
    assert response.store is False
    assert response.output_text == "Hello from the fake model."
    close_old_connections()
    assert not Response.objects.filter(public_id=response.id).exists()
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.create(model="fake-model", input="again", previous_response_id=response.id)
    assert caught.value.param == "previous_response_id"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "Hi"}, "model"),
        ({"model": "fake-model"}, "input"),
        ({"model": "fake-model", "input": ""}, "input"),
        ({"model": "fake-model", "input": []}, "input"),
        ({"model": "fake-model", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "fake-model", "input": "Hi", "temperature": 2.5}, "temperature"),
        ({"model": "fake-model", "input": "Hi", "top_p": 1.5}, "top_p"),
        ({"model": "fake-model", "input": "Hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "fake-model", "input": "Hi", "background": True, "store": False}, "background"),
        ({"model": "fake-model", "input": "Hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "fake-model", "input": "Hi", "tools": [{"type": "computer"}]}, "tools[0].type"),
        ({"model": "fake-model", "input": "Hi", "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "fake-model", "input": "Hi", "text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"model": "fake-model", "input": "Hi", "metadata": {"k": 1}}, "metadata.k"),
        ({"model": "fake-model", "input": "Hi", "truncation": "sometimes"}, "truncation"),
        (
            {
                "model": "fake-model",
                "input": "Hi",
                "previous_response_id": "resp_x",
                "conversation": "conv_y",
            },
            "conversation",
        ),
    ],
)
def test_invalid_requests_are_400(
    live_gateway: LiveGateway, provider: Provider, project_key, body: dict, param: str
) -> None:
    reply = post(live_gateway, project_key[1], "/responses", body)
    assert reply.status_code == 400, reply.text
    assert_valid("ErrorResponse", reply.json())
    assert reply.json()["error"]["param"] == param
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert not Response.objects.exists()


def test_unknown_model_is_404_and_nothing_is_stored(sdk: openai.OpenAI, provider: Provider) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.create(model="no-such-model", input="Hi")
    assert caught.value.code == "model_not_found"
    assert not Response.objects.exists()


def test_max_output_tokens_gives_incomplete(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    upstream.behaviour["fake-model"] = "length"
    response = sdk.responses.create(model="fake-model", input="Tell me a long story", max_output_tokens=1)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"
    assert response.output_text == "Hello"
    assert response.completed_at is None
    assert sdk.responses.retrieve(response.id).status == "incomplete"


def test_upstream_failure_marks_the_response_failed(
    sdk: openai.OpenAI, live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key
) -> None:
    upstream.behaviour["fake-model"] = "error_400"
    reply = post(live_gateway, project_key[1], "/responses", {"model": "fake-model", "input": "Hi"})
    assert reply.status_code == 200
    body = reply.json()
    assert_valid("Response", body)
    assert body["status"] == "failed"
    assert body["error"] == {"code": "invalid_prompt", "message": "maximum context length exceeded"}
    stored = sdk.responses.retrieve(body["id"])
    assert stored.status == "failed"
    assert [item.content[0].text for item in sdk.responses.input_items.list(body["id"])] == ["Hi"]


def test_server_failure_code(sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream) -> None:
    upstream.behaviour["fake-model"] = "error_500"
    response = sdk.responses.create(model="fake-model", input="Hi")
    assert response.status == "failed"
    assert response.error is not None
    assert response.error.code == "server_error"


def test_reasoning_output_item(sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream) -> None:
    upstream.behaviour["fake-reasoner"] = "reasoning"
    response = sdk.responses.create(model="fake-reasoner", input="Think", reasoning={"effort": "low"})
    assert [item.type for item in response.output] == ["reasoning", "message"]
    reasoning = response.output[0]
    assert reasoning.id.startswith("rs_")
    assert reasoning.content is not None
    assert reasoning.content[0].text == "Let me think."
    assert response.output_text == "Hello from the fake model."
    assert _chat_body(upstream)["reasoning_effort"] == "low"


def test_text_format_becomes_response_format(
    sdk: openai.OpenAI, provider: Provider, upstream: FakeUpstream
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    response = sdk.responses.create(
        model="fake-model",
        input="JSON please",
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}},
    )
    assert response.text is not None
    assert response.text.format is not None
    assert response.text.format.type == "json_schema"
    assert _chat_body(upstream)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }


def test_usage_is_recorded_like_chat(sdk: openai.OpenAI, provider: Provider) -> None:
    sdk.responses.create(model="fake-model", input="Hi")
    deadline = time.monotonic() + 5
    rows: list[UsageRecord] = []
    while time.monotonic() < deadline and not rows:
        close_old_connections()
        rows = list(UsageRecord.objects.all())
        time.sleep(0.05)
    assert len(rows) == 1
    assert rows[0].model == "fake-model"
    assert rows[0].completion_tokens == 6


def test_another_projects_response_is_404_everywhere(
    sdk: openai.OpenAI, live_gateway: LiveGateway, provider: Provider
) -> None:
    response = sdk.responses.create(model="fake-model", input="Hi")
    _, other_key = make_api_key()
    for method, path in [
        ("GET", f"/responses/{response.id}"),
        ("GET", f"/responses/{response.id}/input_items"),
        ("POST", f"/responses/{response.id}/cancel"),
        ("DELETE", f"/responses/{response.id}"),
    ]:
        import httpx

        reply = httpx.request(
            method,
            f"{live_gateway.url}/v1{path}",
            headers={"Authorization": f"Bearer {other_key}"},
            timeout=10,
        )
        assert reply.status_code == 404, (method, path, reply.text)
        assert reply.json()["error"]["code"] == "response_not_found"
    reply = post(
        live_gateway,
        other_key,
        "/responses",
        {"model": "fake-model", "input": "x", "previous_response_id": response.id},
    )
    assert reply.status_code == 404
    assert reply.json()["error"]["param"] == "previous_response_id"
    assert sdk.responses.retrieve(response.id).status == "completed"  # still there for its owner


def test_cancel_of_a_synchronous_response_is_400(sdk: openai.OpenAI, provider: Provider) -> None:
    response = sdk.responses.create(model="fake-model", input="Hi")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.cancel(response.id)
    assert caught.value.code == "response_not_cancellable"


def test_missing_key_is_401(live_gateway: LiveGateway) -> None:
    import httpx

    reply = httpx.post(f"{live_gateway.url}/v1/responses", json={"model": "m", "input": "x"}, timeout=10)
    assert reply.status_code == 401
    assert_valid("ErrorResponse", reply.json())


def test_malformed_body_and_wrong_method(live_gateway: LiveGateway, project_key) -> None:
    import httpx

    auth = {"Authorization": f"Bearer {project_key[1]}", "Content-Type": "application/json"}
    bad = httpx.post(f"{live_gateway.url}/v1/responses", content=b"{not json", headers=auth, timeout=10)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_json"
    wrong = httpx.get(f"{live_gateway.url}/v1/responses", headers=auth, timeout=10)
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "POST"
    assert_valid("ErrorResponse", wrong.json())
    traced = httpx.request("TRACE", f"{live_gateway.url}/v1/responses/resp_nope", headers=auth, timeout=10)
    assert (traced.status_code, traced.headers["Allow"]) == (405, "GET, DELETE")
    bad_page = get(live_gateway, project_key[1], "/responses/resp_nope/input_items", limit=0)
    assert bad_page.status_code == 404  # the response is looked up first


def test_large_inputs_and_the_body_limit(
    live_gateway: LiveGateway, provider: Provider, upstream: FakeUpstream, project_key, settings
) -> None:
    text = "word " * 700_000  # 3.5 MB: more than Django's default upload limit
    reply = post(live_gateway, project_key[1], "/responses", {"model": "fake-model", "input": text})
    assert reply.status_code == 200, reply.text[:300]
    assert _chat_body(upstream)["messages"][0]["content"] == text
    settings.CHAT_MAX_BODY_BYTES = 100
    refused = post(live_gateway, project_key[1], "/responses", {"model": "fake-model", "input": "x" * 200})
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "request_too_large"


def test_rate_limited_request_is_429_and_not_stored(live_gateway: LiveGateway, provider: Provider) -> None:
    from organizations import services as organization_services
    from organizations.tests.factories import make_project
    from responses.tests.helpers import stream_events

    project = make_project()
    organization_services.project_rate_limit_set(
        project=project, model="fake-model", actor=organization_services.SYSTEM, max_requests_per_1_minute=1
    )
    _, key = make_api_key(project=project)
    assert post(live_gateway, key, "/responses", {"model": "fake-model", "input": "Hi"}).status_code == 200
    refused = post(live_gateway, key, "/responses", {"model": "fake-model", "input": "Hi"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "retry-after" in refused.headers
    close_old_connections()
    assert Response.objects.count() == 1
    # a stream has sent its status line already: the refusal is its response.failed
    events = stream_events(live_gateway, key, {"model": "fake-model", "input": "Hi", "stream": True})
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "rate_limit_exceeded"
