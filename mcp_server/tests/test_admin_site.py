"""Django admin lists the MCP usage record, read-only."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.auth import principal_from_headers
from mcp_server.services import tool_call_record
from organizations.tests.factories import make_api_key

pytestmark = pytest.mark.django_db


def test_tool_calls_are_listed_read_only(admin_user) -> None:  # type: ignore[no-untyped-def]
    _, raw = make_api_key()
    principal = principal_from_headers({"Authorization": f"Bearer {raw}"})
    call = tool_call_record(principal=principal, tool="serper_search", is_error=False, latency_ms=12.5)
    client = Client()
    client.force_login(admin_user)
    listing = client.get("/admin/mcp_server/toolcall/")
    assert listing.status_code == 200
    assert "serper_search" in listing.content.decode()
    assert client.get("/admin/mcp_server/toolcall/add/").status_code == 403
    detail = client.get(f"/admin/mcp_server/toolcall/{call.pk}/change/")
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
