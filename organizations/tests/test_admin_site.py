"""Django admin for the tenancy models: pages render, the hash never shows, revoke clears access."""

from __future__ import annotations

from typing import Any

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


def _form_data(form: Any) -> dict[str, Any]:
    """What a browser would post back for an unchanged Django form (split date/time included)."""
    from django.forms import SplitDateTimeWidget

    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        key = form.add_prefix(name)
        if isinstance(field.widget, SplitDateTimeWidget):
            if value is not None:
                data[f"{key}_0"], data[f"{key}_1"] = value.strftime("%Y-%m-%d"), value.strftime("%H:%M:%S")
        elif value is not None:
            data[key] = value
    return data


def _demote_through_the_member_page(staff_client: Client, member: Any) -> None:
    url = f"/admin/organizations/organizationmember/{member.pk}/change/"
    data = _form_data(staff_client.get(url).context["adminform"].form)
    response = staff_client.post(url, {**data, "role": "reader", "_save": "Save"})
    assert response.status_code == 302, response.content.decode()[:3000]


def test_demoting_an_owner_in_django_admin_revokes_their_admin_keys(
    staff_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    from accounts.auth import principal_from_headers
    from gateway.errors import AuthenticationError
    from organizations.models import OrganizationMember
    from organizations.tests.factories import make_org, make_project, make_user

    owner, other_owner = make_user(), make_user()
    org = make_org(owner=owner)
    OrganizationMember.objects.create(organization=org, user=other_owner, role="owner")
    project = make_project(org=org, owner=owner)
    admin_key, admin_raw = make_api_key(org=org, key_type=ApiKey.Type.ADMIN, user=owner)
    _, project_raw = make_api_key(project=project, user=owner)
    principal_from_headers({"Authorization": f"Bearer {admin_raw}"}, route="admin")  # cached now

    with django_capture_on_commit_callbacks(execute=True):  # the cache is cleared at the commit
        _demote_through_the_member_page(
            staff_client, OrganizationMember.objects.get(organization=org, user=owner)
        )

    admin_key.refresh_from_db()
    assert admin_key.deleted_at is not None
    with pytest.raises(AuthenticationError):
        principal_from_headers({"Authorization": f"Bearer {admin_raw}"}, route="admin")
    # Still the project's owner: that key keeps working.
    assert principal_from_headers({"Authorization": f"Bearer {project_raw}"}).project_id == project.pk


def test_removing_a_project_member_in_django_admin_stops_their_keys(
    staff_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    from accounts.auth import principal_from_headers
    from gateway.errors import AuthenticationError
    from organizations.models import ProjectMember
    from organizations.tests.factories import make_project, make_user

    member = make_user()
    project = make_project()
    ProjectMember.objects.create(project=project, user=member, role="member")
    _, member_raw = make_api_key(project=project, user=member)
    assert principal_from_headers({"Authorization": f"Bearer {member_raw}"}).user_id == member.pk  # cached

    url = f"/admin/organizations/project/{project.pk}/change/"
    page = staff_client.get(url)
    data = _form_data(page.context["adminform"].form)
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update(
            {formset.management_form.add_prefix(k): v for k, v in formset.management_form.initial.items()}
        )
        for form in formset.forms:
            data.update(_form_data(form))
            if form.instance.user_id == member.pk:
                data[form.add_prefix("DELETE")] = "on"
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(url, {**data, "_save": "Save"})
    assert response.status_code == 302, response.content.decode()[:3000]
    assert not ProjectMember.objects.filter(project=project, user=member).exists()
    with pytest.raises(AuthenticationError):
        principal_from_headers({"Authorization": f"Bearer {member_raw}"})
