"""Django admin for stored responses: read-only pages render."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.auth import principal_from_headers
from organizations.tests.factories import make_api_key
from responses import services
from responses.validation import parse_create

pytestmark = pytest.mark.django_db


def test_response_admin_pages_render_read_only(admin_user) -> None:  # type: ignore[no-untyped-def]
    _, raw = make_api_key()
    principal = principal_from_headers({"Authorization": f"Bearer {raw}"})
    row, _ = services.response_create(
        principal=principal,
        request=parse_create({"model": "m", "input": "Hello admin", "metadata": {"k": "v"}}),
    )
    client = Client()
    client.force_login(admin_user)
    listing = client.get("/admin/responses/response/")
    assert listing.status_code == 200
    assert row.public_id in listing.content.decode()
    page = client.get(f"/admin/responses/response/{row.pk}/change/")
    assert page.status_code == 200
    assert "Hello admin" in page.content.decode()
    assert client.get("/admin/responses/response/add/").status_code == 403
