"""Model allow-lists per project and per key: set through the administration API, carried in the
cached key entry, applied to /v1/models and to every inference endpoint (403 model_not_allowed)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from inference.tests.fake_upstream import FakeUpstream
from organizations.models import ApiKey
from organizations.tests.factories import make_api_key, make_org, make_project, org_owner
from tests.fixtures import register
from tests.live_server import LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)


def _client(gateway: LiveGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, _strict_response_validation=True
    )


def _admin(gateway: LiveGateway, key: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method, f"{gateway.url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


@pytest.fixture
def models_upstream(make_upstream: Any) -> FakeUpstream:
    upstream: FakeUpstream = make_upstream(["open-small", "open-large", "premium-xl"])
    register(upstream)
    return upstream


def test_project_allow_list_through_the_admin_api(
    live_gateway: LiveGateway, models_upstream: FakeUpstream
) -> None:
    org = make_org()
    limited, other = make_project(org=org), make_project(org=org)
    _, admin_key = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=org_owner(org))
    _, limited_key = make_api_key(project=limited)
    _, other_key = make_api_key(project=other)
    path = f"/v1/organization/projects/{limited.public_id}/model_access"
    assert _admin(live_gateway, admin_key, "get", path).json()["allowed_models"] == []
    # The key is cached before the change: the change must drop it from every cache.
    assert len(_client(live_gateway, limited_key).models.list().data) == 3
    set_answer = _admin(live_gateway, admin_key, "post", path, {"allowed_models": ["open-*"]})
    assert set_answer.status_code == 200, set_answer.text
    assert set_answer.json() == {
        "object": "project.model_access",
        "project_id": limited.public_id,
        "allowed_models": ["open-*"],
    }

    sdk = _client(live_gateway, limited_key)
    assert sorted(model.id for model in sdk.models.list().data) == ["open-large", "open-small"]
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("premium-xl")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk.chat.completions.create(model="premium-xl", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 403
    assert refused.value.code == "model_not_allowed"
    assert refused.value.param == "model"
    with pytest.raises(openai.PermissionDeniedError):
        sdk.embeddings.create(model="premium-xl", input="hi", encoding_format="float")
    with pytest.raises(openai.PermissionDeniedError):
        sdk.completions.create(model="premium-xl", prompt="hi")
    assert not any(r["body"] and r["body"].get("model") == "premium-xl" for r in models_upstream.requests)
    assert sdk.chat.completions.create(
        model="open-small", messages=[{"role": "user", "content": "hi"}]
    ).choices

    # Another project of the same organization is not limited.
    other_sdk = _client(live_gateway, other_key)
    assert "premium-xl" in {model.id for model in other_sdk.models.list().data}
    assert other_sdk.chat.completions.create(
        model="premium-xl", messages=[{"role": "user", "content": "hi"}]
    ).choices


def test_key_allow_list_narrows_the_project(live_gateway: LiveGateway, models_upstream: FakeUpstream) -> None:
    org = make_org()
    project = make_project(org=org)
    _, admin_key = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=org_owner(org))
    key, raw = make_api_key(project=project)
    _, sibling = make_api_key(project=project)
    base = f"/v1/organization/projects/{project.public_id}"
    _admin(
        live_gateway, admin_key, "post", f"{base}/model_access", {"allowed_models": ["open-*", "premium-xl"]}
    )
    answer = _admin(
        live_gateway,
        admin_key,
        "post",
        f"{base}/api_keys/{key.public_id}/model_access",
        {"allowed_models": ["*-xl", "open-small"]},
    )
    assert answer.json()["allowed_models"] == ["*-xl", "open-small"]
    # Both lists apply: the key's and its project's.
    assert sorted(m.id for m in _client(live_gateway, raw).models.list().data) == ["open-small", "premium-xl"]
    assert len(_client(live_gateway, sibling).models.list().data) == 3
    bad = _admin(live_gateway, admin_key, "post", f"{base}/model_access", {"allowed_models": [""]})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "allowed_models.0"


def test_another_tenants_project_is_not_found(live_gateway: LiveGateway) -> None:
    org = make_org()
    project = make_project(org=org)
    other_org_admin = make_api_key(key_type=ApiKey.Type.ADMIN, org=make_org())[1]
    path = f"/v1/organization/projects/{project.public_id}/model_access"
    assert _admin(live_gateway, other_org_admin, "get", path).status_code == 404
    assert _admin(live_gateway, other_org_admin, "post", path, {"allowed_models": ["x"]}).status_code == 404
