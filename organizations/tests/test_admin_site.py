"""Django admin for the tenancy models: pages render, the hash never shows, revoke clears access."""

from __future__ import annotations

import pytest
from django.test import Client

from organizations.models import ApiKey
from organizations.tests.factories import make_api_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(admin_user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(admin_user)
    return client


def test_admin_pages_render_without_the_key_hash(staff_client: Client) -> None:
    key, raw = make_api_key()
    for url in (
        "/admin/organizations/organization/",
        f"/admin/organizations/organization/{key.organization_id}/change/",
        "/admin/organizations/project/",
        "/admin/organizations/apikey/",
        f"/admin/organizations/apikey/{key.pk}/change/",
    ):
        response = staff_client.get(url)
        assert response.status_code == 200, url
        page = response.content.decode()
        assert key.key_hash not in page
        assert raw not in page
    assert key.redacted_value in staff_client.get("/admin/organizations/apikey/").content.decode()


def test_revoke_action_soft_deletes_the_key(staff_client: Client) -> None:
    key, _ = make_api_key()
    response = staff_client.post(
        "/admin/organizations/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True
    )
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.deleted_at is not None
    assert not key.enabled
    assert ApiKey.objects.filter(pk=key.pk).exists()


def test_invite_and_audit_pages_render_and_resend_goes_through_the_service(staff_client: Client) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from organizations.models import AuditLogEntry, Invite
    from organizations.tests.factories import make_org

    org = make_org()
    invite = Invite.objects.create(
        organization=org,
        email="i@example.com",
        role="reader",
        delivery_status="failed",
        secret_hash="f" * 64,
        expires_at=timezone.now() + timedelta(days=1),
    )
    AuditLogEntry.objects.create(
        organization=org, action="x.y", actor_type="system", target_type="x", target_id="x"
    )
    for url in (
        "/admin/organizations/invite/",
        f"/admin/organizations/invite/{invite.pk}/change/",
        "/admin/organizations/auditlogentry/",
        "/admin/organizations/organizationmember/",
        "/admin/organizations/projectmember/",
    ):
        response = staff_client.get(url)
        assert response.status_code == 200, url
        assert "f" * 64 not in response.content.decode()
    staff_client.post("/admin/organizations/invite/", {"action": "resend", "_selected_action": [invite.pk]})
    invite.refresh_from_db()
    assert invite.delivery_status == "pending"
    assert AuditLogEntry.objects.filter(action="invite.resent", target_id=invite.public_id).exists()
