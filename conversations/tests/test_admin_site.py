"""Django admin for conversations: pages render the conversation and its items, read-only."""

from __future__ import annotations

import pytest
from django.test import Client

from conversations.tests.factories import make_conversation

pytestmark = pytest.mark.django_db


def test_conversation_pages_render_read_only(admin_user) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(admin_user)
    conversation = make_conversation(title="Admin view", items=[{"role": "user", "content": "visible text"}])
    listing = client.get("/admin/conversations/conversation/")
    assert listing.status_code == 200
    assert conversation.public_id in listing.content.decode()
    page = client.get(f"/admin/conversations/conversation/{conversation.pk}/change/")
    assert page.status_code == 200
    assert "visible text" in page.content.decode()
    assert client.get("/admin/conversations/conversation/add/").status_code == 403
    edit = client.post(f"/admin/conversations/conversation/{conversation.pk}/change/", {"title": "changed"})
    assert edit.status_code == 403
    conversation.refresh_from_db()
    assert conversation.title == "Admin view"
