"""Both conversation-aware chat endpoints store a turn only when asked (`store: true`)."""

from __future__ import annotations

import httpx
import pytest

from conversations.models import Item
from inference.models import Provider
from inference.tests.fake_upstream import FakeUpstream
from tests.live_server import LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)

BODIES = {
    "/v1/conv/chat/completions": {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}]},
    "/v1/conv/completions": {"model": "fake-model", "input": "Hi"},
}


@pytest.mark.parametrize("path", sorted(BODIES))
@pytest.mark.parametrize("stream", [False, True])
def test_turn_is_stored_only_with_store_true(
    live_gateway: LiveGateway,
    project_key,
    provider: Provider,
    upstream: FakeUpstream,
    path: str,
    stream: bool,
) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {project_key[1]}"}
    for store, expected_items in ((None, 0), (False, 0), (True, 2)):
        body = {**BODIES[path], "stream": stream}
        if store is not None:
            body["store"] = store
        before = Item.objects.count()
        answer = httpx.post(f"{live_gateway.url}{path}", json=body, headers=headers, timeout=15)
        assert answer.status_code == 200, answer.text
        if stream:
            first = answer.text.split("\n\n")[0].removeprefix("data: ")
            metadata = httpx.Response(200, content=first).json()["metadata"]
        else:
            metadata = answer.json()["metadata"]
        assert metadata["store"] == ("true" if store else "false"), (path, store)
        assert Item.objects.count() - before == expected_items, (path, store)
        stored = Item.objects.filter(conversation__public_id=metadata["conversation_id"]).count()
        assert stored == expected_items
