"""Django admin "add API key": the value is shown once, on the page that created it, and never again."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from organizations.models import ApiKey
from organizations.services import api_key_hash
from organizations.tests.factories import make_project, make_user, org_owner

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/organizations/apikey/add/"
KEY_IN_PAGE = re.compile(r'value="(sk-project_[A-Za-z0-9]+)"')


@pytest.fixture
def staff_client(admin_user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(admin_user)
    return client


def test_add_key_shows_the_value_once_and_it_authenticates(staff_client: Client) -> None:
    project = make_project()
    owner = org_owner(project.organization)
    assert staff_client.get(ADD_URL).status_code == 200

    response = staff_client.post(
        ADD_URL,
        {
            "name": "from admin",
            "key_type": "project",
            "organization": project.organization_id,
            "project": project.pk,
            "owner_user": owner.pk,
        },
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    match = KEY_IN_PAGE.search(response.content.decode())
    assert match is not None, response.content.decode()[:2000]
    raw_key = match.group(1)
    key = ApiKey.objects.get(name="from admin")
    assert key.key_hash == api_key_hash(raw_key)
    assert key.redacted_value == f"sk-…{raw_key[-4:]}"
    assert (key.project_id, key.owner_user_id, key.key_type) == (project.pk, owner.pk, "project")

    # The key works on the API ...
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert api.get("/v1/conversations/conv_doesnotexist").status_code == 404  # authenticated, not 401
    assert (
        Client(HTTP_AUTHORIZATION="Bearer sk-project_" + "x" * 48)
        .get("/v1/conversations/conv_doesnotexist")
        .status_code
        == 401
    )
    # ... and no admin page shows it again.
    for url in ("/admin/organizations/apikey/", f"/admin/organizations/apikey/{key.pk}/change/"):
        page = staff_client.get(url).content.decode()
        assert raw_key not in page
        assert key.key_hash not in page


@pytest.mark.parametrize(
    ("fields", "field_in_error"),
    [
        ({"key_type": "project"}, "project"),  # a project key without a project
        ({"key_type": "admin", "with_project": True}, "project"),  # an admin key inside a project
        ({"key_type": "project", "with_project": True, "no_owner": True}, "owner_user"),
        ({"key_type": "service", "with_project": True}, "service_account"),
        ({"key_type": "ephemeral", "with_project": True}, "expires_in"),  # needs a short expiry
        ({"key_type": "ephemeral", "with_project": True, "expires_in": 7200}, "expires_in"),
    ],
)
def test_add_key_refuses_inconsistent_keys_with_a_form_error(
    staff_client: Client, fields: dict[str, object], field_in_error: str
) -> None:
    project = make_project()
    owner = org_owner(project.organization)
    data: dict[str, object] = {
        "name": "bad",
        "key_type": fields["key_type"],
        "organization": project.organization_id,
    }
    if fields.get("with_project"):
        data["project"] = project.pk
    if not fields.get("no_owner"):
        data["owner_user"] = owner.pk
    if "expires_in" in fields:
        data["expires_in"] = fields["expires_in"]

    response = staff_client.post(ADD_URL, data)

    assert response.status_code == 200
    assert field_in_error in response.context["adminform"].form.errors
    assert not ApiKey.objects.filter(name="bad").exists()


def test_add_key_refuses_a_project_of_another_organization(staff_client: Client) -> None:
    project, other = make_project(), make_project()
    response = staff_client.post(
        ADD_URL,
        {
            "name": "bad",
            "key_type": "project",
            "organization": other.organization_id,
            "project": project.pk,
            "owner_user": make_user().pk,
        },
    )
    assert "project" in response.context["adminform"].form.errors
    assert not ApiKey.objects.filter(name="bad").exists()


def test_add_key_is_audited_and_refused_for_an_archived_project(staff_client: Client) -> None:
    from organizations.models import AuditLogEntry, Project

    project = make_project()
    owner = org_owner(project.organization)
    data = {
        "name": "audited",
        "key_type": "project",
        "organization": project.organization_id,
        "project": project.pk,
        "owner_user": owner.pk,
    }
    audited_before = AuditLogEntry.objects.filter(organization=project.organization).count()
    assert staff_client.post(ADD_URL, data).status_code == 200
    assert AuditLogEntry.objects.filter(organization=project.organization).count() == audited_before + 1

    Project.objects.filter(pk=project.pk).update(status=Project.Status.ARCHIVED)
    response = staff_client.post(ADD_URL, {**data, "name": "archived"})
    assert "project" in response.context["adminform"].form.errors
    assert not ApiKey.objects.filter(name="archived").exists()
