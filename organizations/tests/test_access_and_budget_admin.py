"""Model allow-lists and monthly budgets in Django admin: the pages show them (with this month's
spend), edits go through the services (checked, audited), and the key's next lookup carries them."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.auth import AsgiHeaders, principal_from_headers
from organizations.models import ApiKey, AuditLogEntry
from organizations.tests.factories import make_api_key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff_client(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def _key_form(key: ApiKey, **changes: str) -> dict[str, str]:
    form = {
        "max_requests_per_1_minute": "0",
        "max_tokens_per_1_minute": "0",
        "max_concurrent_streams": "0",
        "allowed_models": "[]",
        "monthly_budget": "",
        "monthly_soft_budget": "",
    }
    return {**form, **changes}


def test_pages_show_allow_lists_and_budget_state(staff_client: Client) -> None:
    key, _ = make_api_key()
    for url in (
        f"/admin/organizations/project/{key.project_id}/change/",
        f"/admin/organizations/apikey/{key.pk}/change/",
    ):
        page = staff_client.get(url)
        assert page.status_code == 200, url
        text = page.content.decode()
        assert "Budget this month" in text
        assert "allowed_models" in text
        assert "monthly_soft_budget" in text


def test_key_edits_reach_the_principal(staff_client: Client) -> None:
    key, raw = make_api_key()
    headers = AsgiHeaders([(b"authorization", f"Bearer {raw}".encode())])
    assert principal_from_headers(headers).model_access == ()  # cached now: the edit must drop it
    answer = staff_client.post(
        f"/admin/organizations/apikey/{key.pk}/change/",
        _key_form(key, allowed_models='["m-*", "exact"]', monthly_budget="1.5", monthly_soft_budget="1"),
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    principal = principal_from_headers(headers)
    assert principal.model_access == (("m-*", "exact"),)
    assert principal.budgets == ((f"k{key.pk}", 1_500_000_000, 1_000_000_000),)
    changes = [entry.changes for entry in AuditLogEntry.objects.filter(target_id=key.public_id)]
    assert {"allowed_models": {"before": [], "after": ["m-*", "exact"]}} in changes


def test_a_bad_allow_list_is_a_form_error(staff_client: Client) -> None:
    key, _ = make_api_key()
    answer = staff_client.post(
        f"/admin/organizations/apikey/{key.pk}/change/", _key_form(key, allowed_models='[""]')
    )
    assert answer.status_code == 200  # the form again, with its error
    assert "Each entry must be a model id or glob pattern" in answer.content.decode()
    key.refresh_from_db()
    assert key.allowed_models == []


def test_project_edits_go_through_the_services(staff_client: Client) -> None:
    import re

    key, raw = make_api_key()
    project = key.project
    assert project is not None
    headers = AsgiHeaders([(b"authorization", f"Bearer {raw}".encode())])
    assert principal_from_headers(headers).budgets == ()
    url = f"/admin/organizations/project/{project.pk}/change/"
    page = staff_client.get(url).content.decode()
    form: dict[str, str] = {
        "organization": str(project.organization_id),
        "name": project.name,
        "status": project.status,
        "allowed_models": '["open-*"]',
        "monthly_budget": "0.05",
        "monthly_soft_budget": "",
    }
    for prefix in re.findall(r'name="([^"]+)-TOTAL_FORMS"', page):  # the inlines, left empty
        form |= {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"}
    answer = staff_client.post(url, form)
    assert answer.status_code == 302, answer.content.decode()[:3000]
    principal = principal_from_headers(headers)
    assert principal.model_access == (("open-*",),)
    assert principal.budgets == ((f"p{project.pk}", 50_000_000, 0),)
    assert AuditLogEntry.objects.filter(target_id=project.public_id, action="project.updated").count() == 2
