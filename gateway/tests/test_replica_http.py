"""Create-then-use flows through real HTTP while reads may go to a standby that applies WAL late.

The live gateway runs in this process against the test database on the primary; its replica
alias reads the same database on the delayed standby (scripts/pg_standby.sh). Each flow starts
with the standby caught up, so only the flow's own writes can be missing there, and runs its
steps back to back: a step that read the standby before it replayed the previous step fails.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db.backends.signals import connection_created

from gateway import db_router
from gateway.tests.standby import (
    requires_standby,
    standby_command,
    standby_dir,
    wait_replica_caught_up,
)
from inference.models import Provider
from organizations.tests.factories import make_api_key, make_org, make_user
from tests.live_server import LiveGateway

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__")]

ROUNDS = 5


def _jwt(user: Any) -> str:
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken()
    token["sub"] = user.public_id
    return str(token)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class _QueriesPerAlias:
    """Counts statements per connection alias, on every thread (the live gateway's included)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.active = False
        self._lock = threading.Lock()

    def wrapper(self, execute: Any, sql: str, params: Any, many: bool, ctx: dict[str, Any]) -> Any:
        if self.active:
            with self._lock:
                self.counts[ctx["connection"].alias] += 1
        return execute(sql, params, many, ctx)

    def install(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        if self.wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(self.wrapper)


@pytest.fixture
def queries() -> Iterator[_QueriesPerAlias]:
    counter = _QueriesPerAlias()
    connection_created.connect(counter.install)
    try:
        yield counter
    finally:
        connection_created.disconnect(counter.install)
        counter.active = False


@pytest.fixture
def replica() -> str:
    return str(settings.DATABASE_REPLICAS[0]) if settings.DATABASE_REPLICAS else ""


@requires_standby
def test_guest_login_then_me(live_gateway: LiveGateway, replica: str) -> None:
    wait_replica_caught_up(replica)
    with httpx.Client(base_url=live_gateway.url, timeout=10) as client:
        for _ in range(ROUNDS):
            login = client.post("/v1/auth/guest-login")
            assert login.status_code == 200, login.text
            client.cookies.clear()  # a new guest each round, not the refresh of the last one
            me = client.get("/v1/auth/me", headers=_auth(login.json()["access_token"]))
            assert me.status_code == 200, me.text


@requires_standby
def test_project_then_key_then_chat(live_gateway: LiveGateway, provider: Provider, replica: str) -> None:
    owner = make_user()
    org = make_org(owner=owner)
    wait_replica_caught_up(replica)
    jwt = _auth(_jwt(owner))
    with httpx.Client(base_url=live_gateway.url, timeout=10) as client:
        for round_ in range(ROUNDS):
            project = client.post(
                f"/v1/organization/{org.public_id}/projects", json={"name": f"p{round_}"}, headers=jwt
            )
            assert project.status_code in (200, 201), project.text
            key = client.post(
                f"/v1/organization/{org.public_id}/projects/{project.json()['id']}/api_keys",
                json={"name": "k"},
                headers=jwt,
            )
            assert key.status_code in (200, 201), key.text
            chat = client.post(
                "/v1/chat/completions",
                json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
                headers=_auth(key.json()["value"]),
            )
            assert chat.status_code == 200, chat.text


@requires_standby
def test_admin_key_then_use_and_organization_with_fresh_jwt(live_gateway: LiveGateway, replica: str) -> None:
    owner = make_user()
    org = make_org(owner=owner)
    wait_replica_caught_up(replica)
    jwt = _auth(_jwt(owner))
    with httpx.Client(base_url=live_gateway.url, timeout=10) as client:
        for round_ in range(ROUNDS):
            admin = client.post(
                "/v1/organization/admin_api_keys",
                json={"name": f"ops{round_}"},
                headers={**jwt, "OpenAI-Organization": org.public_id},
            )
            assert admin.status_code in (200, 201), admin.text
            listed = client.get("/v1/organization/projects", headers=_auth(admin.json()["value"]))
            assert listed.status_code == 200, listed.text
            guest = client.post("/v1/auth/guest-login")
            client.cookies.clear()
            created = client.post(
                "/v1/organization",
                json={"name": f"Org {round_}"},
                headers=_auth(guest.json()["access_token"]),
            )
            assert created.status_code in (200, 201), created.text


@requires_standby
def test_conversation_flows(live_gateway: LiveGateway, replica: str) -> None:
    _, raw = make_api_key()
    wait_replica_caught_up(replica)
    auth = _auth(raw)
    with httpx.Client(base_url=live_gateway.url, timeout=10, headers=auth) as client:
        for round_ in range(ROUNDS):
            created = client.post("/v1/conversations", json={"metadata": {"round": str(round_)}})
            assert created.status_code == 200, created.text
            conversation_id = created.json()["id"]
            got = client.get(f"/v1/conversations/{conversation_id}")
            assert got.status_code == 200, got.text

            added = client.post(
                f"/v1/conversations/{conversation_id}/items",
                json={"items": [{"type": "message", "role": "user", "content": f"hello {round_}"}]},
            )
            assert added.status_code == 200, added.text
            items = client.get(f"/v1/conversations/{conversation_id}/items")
            assert items.status_code == 200, items.text
            assert len(items.json()["data"]) == 1

            updated = client.post(
                f"/v1/conversations/{conversation_id}", json={"metadata": {"topic": f"t{round_}"}}
            )
            assert updated.status_code == 200, updated.text
            again = client.get(f"/v1/conversations/{conversation_id}")
            assert again.json()["metadata"] == {"topic": f"t{round_}"}


@requires_standby
def test_response_create_then_retrieve(live_gateway: LiveGateway, provider: Provider, replica: str) -> None:
    _, raw = make_api_key()
    wait_replica_caught_up(replica)
    with httpx.Client(base_url=live_gateway.url, timeout=10, headers=_auth(raw)) as client:
        for _ in range(ROUNDS):
            created = client.post("/v1/responses", json={"model": "fake-model", "input": "Hi"})
            assert created.status_code == 200, created.text
            retrieved = client.get(f"/v1/responses/{created.json()['id']}")
            assert retrieved.status_code == 200, retrieved.text
            assert retrieved.json()["status"] == "completed"


@requires_standby
def test_revoked_key_stays_refused(live_gateway: LiveGateway, replica: str) -> None:
    """Revoked while the standby still holds the key as active: no worker may read it back from
    there and cache it again."""
    owner = make_user()
    org = make_org(owner=owner)
    key, raw = make_api_key(org=org, user=owner)
    wait_replica_caught_up(replica)
    with httpx.Client(base_url=live_gateway.url, timeout=10) as client:
        assert client.get("/v1/conversations", headers=_auth(raw)).status_code == 200  # cached as active
        revoked = client.delete(
            f"/v1/organization/{org.public_id}/projects/{key.project.public_id}/api_keys/{key.public_id}",  # type: ignore[union-attr]
            headers=_auth(_jwt(owner)),
        )
        assert revoked.status_code == 200, revoked.text
        deadline = time.monotonic() + 5
        attempts = 0
        while time.monotonic() < deadline:
            reply = client.get("/v1/conversations", headers=_auth(raw))
            assert reply.status_code == 401, reply.text
            attempts += 1
        assert attempts > 20


@requires_standby
def test_reads_of_a_caught_up_principal_go_to_the_replica(
    live_gateway: LiveGateway, queries: _QueriesPerAlias, replica: str
) -> None:
    _, raw = make_api_key()
    with httpx.Client(base_url=live_gateway.url, timeout=10, headers=_auth(raw)) as client:
        conversation_id = client.post("/v1/conversations", json={}).json()["id"]
        wait_replica_caught_up(replica)
        queries.active = True
        for _ in range(ROUNDS):
            assert client.get(f"/v1/conversations/{conversation_id}").status_code == 200
            assert client.get(f"/v1/conversations/{conversation_id}/items").status_code == 200
        queries.active = False
    assert queries.counts[replica] >= 2 * ROUNDS, queries.counts
    # The primary answered none of those reads (only the minute's last-used stamp may write).
    assert queries.counts["default"] <= 2, queries.counts


# Stopping the shared standby cuts every connection to it, other xdist workers' too (they failed with
# AdminShutdown): the test runs with the process tests, one at a time.
@pytest.mark.slow
@requires_standby
def test_standby_stopped_the_primary_answers_and_readyz_names_it(
    live_gateway: LiveGateway, replica: str
) -> None:
    if standby_dir() is None:
        pytest.skip("PG_STANDBY_DIR is not set: the test may not stop this standby")
    _, raw = make_api_key()
    wait_replica_caught_up(replica)
    with httpx.Client(base_url=live_gateway.url, timeout=10) as client:
        ready = client.get("/readyz").json()
        assert ready["replicas"][replica]["status"] == "ok", ready
        conversation_id = client.post("/v1/conversations", json={}, headers=_auth(raw)).json()["id"]
        wait_replica_caught_up(replica)
        assert client.get(f"/v1/conversations/{conversation_id}", headers=_auth(raw)).status_code == 200
        standby_command("stop-replica")
        try:
            for _ in range(ROUNDS * 4):
                reply = client.get(f"/v1/conversations/{conversation_id}", headers=_auth(raw))
                assert reply.status_code == 200, reply.text
                created = client.post("/v1/conversations", json={}, headers=_auth(raw))
                assert created.status_code == 200, created.text
            started = time.monotonic()
            ready = client.get("/readyz")
            assert time.monotonic() - started < 1.5
            assert ready.status_code == 200, ready.text
            assert ready.json()["replicas"][replica]["status"] == "unreachable"
            assert ready.json()["checks"][replica] == "unreachable"
        finally:
            standby_command("start-replica")
        # Back in rotation once it has caught up, without a restart.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if client.get("/readyz").json()["replicas"][replica]["in_rotation"]:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the replica did not come back")
    db_router.monitor.probe(replica)
