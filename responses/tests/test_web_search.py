"""The server-side web_search tool: a bounded model ↔ Serper loop, shown as web_search_call items."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from inference.tests.fake_upstream import FakeUpstream, _chunk, _usage
from responses.tests.helpers import stream_events
from tests.fakes.serper import FakeSerper, StaticSite
from tests.fixtures import register
from tests.live_server import LiveGateway
from tests.openai_spec import assert_valid

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = "MCP is an open protocol, see https://example.com/first for details."


class SearchingUpstream(FakeUpstream):
    """Asks for a web search until it has seen a tool result, then answers citing a source.

    Behaviour "search_forever" never stops asking (for the round limit); "open_page" opens
    `page_url` instead of searching."""

    page_url = ""

    def _reply(self, body: dict[str, Any], behaviour: str) -> tuple[str | None, dict[str, Any] | None]:
        seen_result = any(m.get("role") == "tool" for m in body["messages"])
        names = [t["function"]["name"] for t in body.get("tools") or []]
        if behaviour == "open_page":
            if not seen_result:
                arguments = orjson.dumps({"url": self.page_url}).decode()
                return None, {"id": "call_open0", "name": "open_page", "arguments": arguments}
            return f"Read it at {self.page_url} today.", None
        if "web_search" in names and (behaviour == "search_forever" or not seen_result):
            count = sum(1 for m in body["messages"] if m.get("role") == "tool")
            return None, {
                "id": f"call_ws{count}",
                "name": "web_search",
                "arguments": '{"query": "model context protocol"}',
            }
        return ANSWER, None

    def _completion(self, body: dict[str, Any], behaviour: str) -> dict[str, Any]:
        text, call = self._reply(body, behaviour)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if call:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ]
        finish = "tool_calls" if call else "stop"
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": _usage(body, 5),
        }

    def _events(self, body: dict[str, Any], behaviour: str) -> list[dict[str, Any]]:
        model = body["model"]
        text, call = self._reply(body, behaviour)
        events = [_chunk(model, {"role": "assistant", "content": ""})]
        if call:
            start = {
                "index": 0,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            events.append(_chunk(model, {"tool_calls": [start]}))
            for piece in (call["arguments"][:10], call["arguments"][10:]):
                events.append(_chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            events.append(_chunk(model, {}, "tool_calls"))
        else:
            assert text is not None
            words = text.split(" ")
            events += [_chunk(model, {"content": (" " if i else "") + word}) for i, word in enumerate(words)]
            events.append(_chunk(model, {}, "stop"))
        usage = _chunk(model, {})
        usage["choices"] = []
        usage["usage"] = _usage(body, 5)
        events.append(usage)
        return events


@pytest.fixture
def searching_upstream() -> Iterator[SearchingUpstream]:
    upstream = SearchingUpstream(["searcher"]).start()
    register(upstream, name="searcher")
    yield upstream
    upstream.stop()


def _chat_bodies(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [r["body"] for r in upstream.requests if r["path"] == "/v1/chat/completions"]


def test_web_search_loop(
    sdk: openai.OpenAI, searching_upstream: SearchingUpstream, fake_serper: FakeSerper
) -> None:
    response = sdk.responses.create(model="searcher", input="What is MCP?", tools=[{"type": "web_search"}])
    assert response.status == "completed"
    assert [item.type for item in response.output] == ["web_search_call", "message"]
    call = response.output[0]
    assert call.id.startswith("ws_")
    assert call.status == "completed"
    assert call.action.type == "search"  # type: ignore[union-attr]
    assert call.action.query == "model context protocol"  # type: ignore[union-attr]
    assert [s.url for s in call.action.sources or []] == [  # type: ignore[union-attr]
        "https://example.com/first",
        "https://example.org/second",
    ]
    assert response.output_text == ANSWER
    annotations = response.output[1].content[0].annotations  # type: ignore[union-attr]
    start = ANSWER.index("https://example.com/first")
    assert [(a.type, a.url, a.title, a.start_index, a.end_index) for a in annotations] == [
        (
            "url_citation",
            "https://example.com/first",
            "Result about model context protocol",
            start,
            start + 25,
        )
    ]
    # Serper got the model's query; the model got Serper's results back as a tool message.
    assert [(path, body["q"]) for path, _, body in fake_serper.requests] == [
        ("/search", "model context protocol")
    ]
    first, second = _chat_bodies(searching_upstream)
    assert [t["function"]["name"] for t in first["tools"]] == ["web_search", "open_page"]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "web_search"
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["tool_call_id"] == "call_ws0"
    assert "Result about model context protocol" in tool_message["content"]
    assert "https://example.com/first" in tool_message["content"]
    # the stored object is the same, and the usage covers both model calls
    assert sdk.responses.retrieve(response.id).to_dict() == response.to_dict()
    assert response.usage is not None
    assert response.usage.output_tokens == 10


def test_web_search_stream_events(
    live_gateway: LiveGateway, searching_upstream: SearchingUpstream, fake_serper: FakeSerper, project_key
) -> None:
    events = stream_events(
        live_gateway,
        project_key[1],
        {
            "model": "searcher",
            "input": "What is MCP?",
            "tools": [{"type": "web_search_preview"}],
            "stream": True,
        },
    )
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    types = [e["type"] for e in events]
    assert types[2:7] == [
        "response.output_item.added",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_item.done",
    ]
    assert "response.function_call_arguments.delta" not in types  # our own calls are not shown as functions
    assert "response.output_text.annotation.added" in types
    assert types[-1] == "response.completed"
    final = events[-1]["response"]
    assert_valid("Response", final)
    assert [item["type"] for item in final["output"]] == ["web_search_call", "message"]


def test_web_search_rounds_are_bounded(
    sdk: openai.OpenAI, searching_upstream: SearchingUpstream, fake_serper: FakeSerper, settings
) -> None:
    settings.RESPONSES_WEB_SEARCH_MAX_ROUNDS = 2
    searching_upstream.behaviour["searcher"] = "search_forever"
    response = sdk.responses.create(model="searcher", input="What is MCP?", tools=[{"type": "web_search"}])
    assert response.status == "completed"
    assert [item.type for item in response.output] == ["web_search_call", "web_search_call", "message"]
    bodies = _chat_bodies(searching_upstream)
    assert len(bodies) == 3
    assert "tools" not in bodies[-1]  # the last call gets no tools: it has to answer
    assert len(fake_serper.requests) == 2


def test_failed_search_is_shown_and_the_model_still_answers(
    sdk: openai.OpenAI, searching_upstream: SearchingUpstream, fake_serper: FakeSerper
) -> None:
    fake_serper.behaviour = "error_500"
    response = sdk.responses.create(model="searcher", input="What is MCP?", tools=[{"type": "web_search"}])
    assert response.output[0].type == "web_search_call"
    assert response.output[0].status == "failed"
    assert response.output_text == ANSWER
    assert response.output[1].content[0].annotations == []  # type: ignore[union-attr]
    tool_message = _chat_bodies(searching_upstream)[1]["messages"][-1]
    assert "Serper answered HTTP 500" in tool_message["content"]


def test_function_named_like_a_web_tool_is_refused(
    sdk: openai.OpenAI, searching_upstream: SearchingUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(
            model="searcher",
            input="x",
            tools=[{"type": "web_search"}, {"type": "function", "name": "web_search", "parameters": {}}],
        )
    assert caught.value.param == "tools"


def test_open_page_reads_the_page_and_cites_it(
    sdk: openai.OpenAI, searching_upstream: SearchingUpstream, fake_serper: FakeSerper, settings
) -> None:
    settings.WEB_FETCH_ALLOW_LOOPBACK = True
    settings.WEB_FETCH_BACKEND = "direct"
    site = StaticSite().start()
    try:
        html = b"<html><head><title>Protocol page</title></head><body><p>MCP connects models to tools.</p></body></html>"
        site.pages["/mcp"] = (200, {"content-type": "text/html; charset=utf-8"}, html)
        searching_upstream.page_url = site.url("/mcp")
        searching_upstream.behaviour["searcher"] = "open_page"
        response = sdk.responses.create(
            model="searcher", input="Read the MCP page", tools=[{"type": "web_search"}]
        )
    finally:
        site.stop()
    assert site.hits == ["/mcp"]
    call = response.output[0]
    assert call.type == "web_search_call"
    assert call.status == "completed"
    assert call.action.type == "open_page"  # type: ignore[union-attr]
    assert call.action.url == site.url("/mcp")  # type: ignore[union-attr]
    annotation = response.output[1].content[0].annotations[0]  # type: ignore[union-attr]
    assert (annotation.url, annotation.title) == (site.url("/mcp"), "Protocol page")
    tool_message = _chat_bodies(searching_upstream)[1]["messages"][-1]
    assert "MCP connects models to tools." in tool_message["content"]


def test_max_tool_calls_bounds_the_searches(
    sdk: openai.OpenAI, searching_upstream: SearchingUpstream, fake_serper: FakeSerper
) -> None:
    searching_upstream.behaviour["searcher"] = "search_forever"
    response = sdk.responses.create(
        model="searcher", input="What is MCP?", tools=[{"type": "web_search"}], max_tool_calls=1
    )
    assert [item.type for item in response.output] == ["web_search_call", "message"]
    assert response.max_tool_calls == 1
    assert len(fake_serper.requests) == 1
