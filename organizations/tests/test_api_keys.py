from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from gateway.errors import InvalidRequest
from organizations import services
from organizations.models import ApiKey, OrganizationMember
from organizations.services.keys import KEY_PATTERN
from organizations.tests.factories import make_api_key, make_project

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("key_type", ApiKey.Type.values)
def test_key_format_and_only_hash_stored(key_type: str) -> None:
    key, raw = make_api_key(key_type=key_type)
    assert KEY_PATTERN.match(raw)
    assert raw.startswith(f"sk-{key_type}_")
    assert key.key_hash == services.api_key_hash(raw)
    assert key.redacted_value == f"sk-…{raw[-4:]}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM organizations_apikey")
        rows = cursor.fetchall()
    assert not any(raw in str(value) for row in rows for value in row)


def test_ephemeral_key_needs_short_expiry() -> None:
    project = make_project()
    for expires_in in (None, 3601, 0):
        with pytest.raises(InvalidRequest):
            services.api_key_create(
                organization=project.organization,
                project=project,
                key_type="ephemeral",
                expires_in=expires_in,
            )


def test_createadminkey_prints_only_a_key_and_makes_an_owner() -> None:
    out = io.StringIO()
    call_command("createadminkey", "--email", "Ops@Example.com", "--name", "ops", stdout=out)
    raw = out.getvalue().strip()
    assert KEY_PATTERN.match(raw)
    assert raw.startswith("sk-admin_")
    key = ApiKey.objects.get(key_hash=services.api_key_hash(raw))
    assert key.name == "ops"
    assert key.organization.is_default
    assert key.owner_user is not None
    assert key.owner_user.email == "ops@example.com"
    role = OrganizationMember.objects.get(organization=key.organization, user=key.owner_user).role
    assert role == "owner"


def test_new_user_gets_default_project_they_own() -> None:
    user, created = services.user_get_or_create(email="new@example.com")
    assert created
    project = services.user_provision(user=user)
    assert project.name == "Default Project"
    assert project.organization.is_default
    assert project.members.get(user=user).role == "owner"
    assert services.user_provision(user=user) == project  # idempotent
