"""The provider registry's admin API, its roles and isolation, and where tenants' URLs may point."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from django.test import Client

from accounts.services import token_pair_issue
from inference import netguard, services
from inference.models import Provider
from inference.registry import registry
from inference.tests.fake_upstream import FakeUpstream
from organizations.models import ApiKey, OrganizationMember
from organizations.tests.factories import make_api_key, make_org, make_project, make_user
from tests.live_server import LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)

PROVIDERS = "/v1/organization/models/providers"


_ORGANIZATION_OF: dict[str, str] = {}  # JWT → the organization it acts in (OpenAI-Organization)


def call(method: str, path: str, token: str, body: Any = None) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if token in _ORGANIZATION_OF:
        headers["HTTP_OPENAI_ORGANIZATION"] = _ORGANIZATION_OF[token]
    return getattr(Client(), method)(path, data=body, content_type="application/json", **headers)


@pytest.fixture
def tenant() -> dict[str, Any]:
    owner, reader = make_user(), make_user()
    org = make_org(owner=owner)
    OrganizationMember.objects.create(organization=org, user=reader, role="reader")
    project = make_project(org=org)
    _, admin_key = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=owner)
    _, project_key = make_api_key(project=project)
    other = make_org()
    _, other_admin = make_api_key(org=other, key_type=ApiKey.Type.ADMIN)
    _, other_project_key = make_api_key(project=make_project(org=other))
    owner_jwt, reader_jwt = token_pair_issue(user=owner).access, token_pair_issue(user=reader).access
    _ORGANIZATION_OF.update({owner_jwt: org.public_id, reader_jwt: org.public_id})
    return {
        "org": org,
        "owner_jwt": owner_jwt,
        "reader_jwt": reader_jwt,
        "admin_key": admin_key,
        "project_key": project_key,
        "other_admin": other_admin,
        "other_project_key": other_project_key,
    }


def _models(gateway: LiveGateway, key: str) -> list[str]:
    response = httpx.get(f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return sorted(model["id"] for model in response.json()["data"])


def test_owner_registers_lists_updates_and_deletes_a_provider(
    settings: Any, live_gateway: LiveGateway, upstream: FakeUpstream, tenant: dict[str, Any]
) -> None:
    settings.PROVIDER_PRIVATE_URLS_ALLOWED = True  # the fake upstream listens on 127.0.0.1
    created = call(
        "post",
        PROVIDERS,
        tenant["owner_jwt"],
        {"name": "team vllm", "base_url": upstream.base_url + "/v1", "api_key": "upstream-secret-key"},
    )
    assert created.status_code == 201, created.content
    body = created.json()
    # Registering lists the upstream's models at once; the key is never shown again.
    assert body["models"] == ["fake-model", "fake-reasoner"]
    assert body["healthy"] is True
    assert body["has_api_key"] is True
    assert body["scope"] == "organization"
    assert body["base_url"] == upstream.base_url + "/v1"
    assert "upstream-secret-key" not in created.content.decode()
    provider_id = body["id"]

    # The organization's projects route to it; another organization's do not see it.
    registry.invalidate()
    assert _models(live_gateway, tenant["project_key"]) == ["fake-model", "fake-reasoner"]
    assert _models(live_gateway, tenant["other_project_key"]) == []
    answer = httpx.post(
        f"{live_gateway.url}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {tenant['project_key']}"},
    )
    assert answer.status_code == 200, answer.text
    assert upstream.requests[-1]["headers"]["authorization"] == "Bearer upstream-secret-key"

    listed = call("get", PROVIDERS, tenant["admin_key"]).json()
    assert [p["id"] for p in listed["data"]] == [provider_id]
    assert call("get", f"{PROVIDERS}/{provider_id}", tenant["owner_jwt"]).json()["name"] == "team vllm"

    updated = call("patch", f"{PROVIDERS}/{provider_id}", tenant["owner_jwt"], {"active": False})
    assert updated.status_code == 200
    assert updated.json()["active"] is False
    registry.invalidate()
    assert _models(live_gateway, tenant["project_key"]) == []

    deleted = call("delete", f"{PROVIDERS}/{provider_id}", tenant["owner_jwt"])
    assert deleted.json() == {"id": provider_id, "object": "model.provider.deleted", "deleted": True}
    assert call("get", f"{PROVIDERS}/{provider_id}", tenant["owner_jwt"]).status_code == 404
    assert not Provider.objects.filter(public_id=provider_id).exists()


def test_roles_and_isolation(settings: Any, upstream: FakeUpstream, tenant: dict[str, Any]) -> None:
    settings.PROVIDER_PRIVATE_URLS_ALLOWED = True
    provider_id = call(
        "post", PROVIDERS, tenant["admin_key"], {"name": "p", "base_url": upstream.base_url}
    ).json()["id"]
    # Readers and data keys do not manage providers.
    reader = call("post", PROVIDERS, tenant["reader_jwt"], {"name": "x", "base_url": upstream.base_url})
    assert reader.status_code == 403
    assert reader.json()["error"]["type"] == "permission_error"
    assert call("get", PROVIDERS, tenant["project_key"]).status_code == 403
    # Another organization's owner gets 404 on every route, not a hint that it exists.
    for method, body in (("get", None), ("patch", {"name": "mine now"}), ("delete", None)):
        response = call(method, f"{PROVIDERS}/{provider_id}", tenant["other_admin"], body)
        assert response.status_code == 404, (method, response.content)
    assert Provider.objects.get(public_id=provider_id).name == "p"


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8000",
        "http://localhost:8000/v1",
        "http://10.1.2.3",
        "http://192.168.0.10:11434",
        "http://169.254.169.254/latest",
        "http://0.0.0.0:8000",
        "http://[::1]:8000",
        "http://[::ffff:127.0.0.1]:8000",
        "http://[2002:7f00:1::]:8000",  # 6to4 carrying 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]",  # NAT64 carrying 169.254.169.254
        "http://100.64.0.1",
    ],
)
def test_tenant_provider_on_a_private_address_is_refused(base_url: str, tenant: dict[str, Any]) -> None:
    response = call("post", PROVIDERS, tenant["owner_jwt"], {"name": "inside", "base_url": base_url})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == "base_url"
    assert not Provider.objects.exists()


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://example.com",
        "not a url",
        "http://user:pw@example.com",
        "http://example.com/v1?tenant=a",  # /v1/models would land in the query
        "http://example.com/?",
        "http://example.com/v1#models",
    ],
)
def test_malformed_base_url_is_400(base_url: str, tenant: dict[str, Any]) -> None:
    response = call("post", PROVIDERS, tenant["owner_jwt"], {"name": "bad", "base_url": base_url})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "base_url"


def test_a_name_that_moves_to_a_private_address_is_refused_at_connect_time(
    settings: Any, live_gateway: LiveGateway, upstream: FakeUpstream, tenant: dict[str, Any]
) -> None:
    # Registered while the operator allowed private URLs; then the policy tightens. The
    # connection-time resolver refuses the name's loopback address (as after DNS rebinding).
    settings.PROVIDER_PRIVATE_URLS_ALLOWED = True
    url = upstream.base_url.replace("127.0.0.1", "localhost")
    assert call("post", PROVIDERS, tenant["owner_jwt"], {"name": "p", "base_url": url}).status_code == 201
    settings.PROVIDER_PRIVATE_URLS_ALLOWED = False
    registry.invalidate()
    seen = len(upstream.requests)
    answer = httpx.post(
        f"{live_gateway.url}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {tenant['project_key']}"},
    )
    assert answer.status_code == 502, answer.text
    assert len(upstream.requests) == seen  # nothing reached the private address


def test_global_providers_are_listed_without_their_address_or_errors(
    settings: Any, live_gateway: LiveGateway, make_upstream: Any, tenant: dict[str, Any]
) -> None:
    settings.PROVIDER_PRIVATE_URLS_ALLOWED = True
    operators = make_upstream(["fake-model"])
    global_provider = services.provider_create(name="operator's vllm", base_url=operators.base_url)
    Provider.objects.filter(pk=global_provider.pk).update(last_error="connect to 10.0.3.7:8000 refused")
    own = call("post", PROVIDERS, tenant["owner_jwt"], {"name": "ours", "base_url": make_upstream().base_url})
    assert own.status_code == 201, own.content
    for token in (tenant["owner_jwt"], tenant["admin_key"]):
        headers = {"Authorization": f"Bearer {token}"}
        if token in _ORGANIZATION_OF:
            headers["OpenAI-Organization"] = _ORGANIZATION_OF[token]
        listed = httpx.get(f"{live_gateway.url}{PROVIDERS}", headers=headers).json()["data"]
        by_scope = {entry["scope"]: entry for entry in listed}
        assert by_scope["global"]["base_url"] is None
        assert by_scope["global"]["last_error"] is None
        assert by_scope["global"]["healthy"] is True
        assert by_scope["organization"]["base_url"] == own.json()["base_url"]
        detail = httpx.get(f"{live_gateway.url}{PROVIDERS}/{global_provider.public_id}", headers=headers)
        assert detail.status_code == 200
        assert detail.json()["base_url"] is None
        assert "10.0.3.7" not in detail.text
        assert operators.base_url not in detail.text


def test_the_health_poll_dials_the_address_it_checked(
    settings: Any, make_upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebinding name answers a permitted address to the check and a forbidden one to any
    later lookup. Here the permitted address is 127.0.0.2 (made "public" for this test, since
    no traffic may leave the machine) and the forbidden one 127.0.0.1, where the upstream
    listens: a poll that resolved twice would reach it."""
    upstream = make_upstream(["fake-model"])
    organization = make_org()
    settings.PROVIDER_PRIVATE_URLS_ALLOWED = True
    provider = services.provider_create(
        name="rebinding",
        base_url=f"http://rebind.example:{upstream.port}",
        organization=organization,
    )
    settings.PROVIDER_PRIVATE_URLS_ALLOWED = False
    real_getaddrinfo, real_is_public = socket.getaddrinfo, netguard.is_public
    lookups: list[str] = []

    def rebinding_dns(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example":
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.2" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    monkeypatch.setattr(
        netguard,
        "is_public",
        lambda address, **kw: str(address) == "127.0.0.2" or real_is_public(address, **kw),
    )
    checked = services.provider_check(provider_id=provider.pk, force=True)
    assert checked is not None
    assert checked.consecutive_failures == 1  # 127.0.0.2 has no listener: the poll failed there
    assert lookups == ["rebind.example"]  # one lookup, the one that was checked
    assert not [r for r in upstream.requests if r["path"] == "/v1/models"]  # 127.0.0.1 never reached
