"""The server-side web_search spends the operator's search credit: its calls count against the
key's and the project's tool-call limits, in the same limiter as chat. A refusal before anything
was answered is a 429; later in a run it ends the response as failed with rate_limit_exceeded."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from responses.tests.test_web_search import SearchingUpstream
from tests.fakes.serper import FakeSerper
from tests.fixtures import register

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def searcher() -> Iterator[SearchingUpstream]:
    upstream = SearchingUpstream(["searcher"]).start()
    register(upstream, name="searcher")
    yield upstream
    upstream.stop()


def test_web_search_calls_are_limited_per_key(
    sdk: openai.OpenAI, searcher: SearchingUpstream, fake_serper: FakeSerper, settings
) -> None:
    settings.TOOL_CALLS_PER_MINUTE_PER_KEY = 1
    settings.RESPONSES_WEB_SEARCH_MAX_ROUNDS = 2
    searcher.behaviour["searcher"] = "search_forever"
    # The first search passes; the model's second one, later in the same run, is refused.
    response = sdk.responses.create(model="searcher", input="What is MCP?", tools=[{"type": "web_search"}])
    assert response.status == "failed"
    assert response.error is not None
    assert response.error.code == "rate_limit_exceeded"
    assert response.error.message.startswith("Rate limit reached for tool calls per min")
    assert len(fake_serper.requests) == 1
    # The next response is refused at its first search, before anything was answered: a 429.
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.responses.create(model="searcher", input="And now?", tools=[{"type": "web_search"}])
    assert "this API key" in refused.value.message
    assert refused.value.response.headers["retry-after"]
    assert len(fake_serper.requests) == 1  # no credit spent on refused calls
