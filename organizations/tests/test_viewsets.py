"""The Administration and Conversations APIs are DRF viewsets on routers, and an administration
request looks its organization and project up once, whatever the action does with them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.viewsets import ViewSetMixin

from accounts.services import token_pair_issue
from organizations.models import ApiKey
from organizations.tests.factories import make_api_key, make_org, make_project, make_user
from organizations.views import AdminViewSet, InviteVerificationViewSet

pytestmark = pytest.mark.django_db

# The inference app serves these under /v1/organization with its own views.
_INFERENCE_ROUTES = re.compile(r"^v1/organization/(<org:org_id>/)?(models|usage|costs)")


def _patterns(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _patterns(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield route, entry


def _served_by(prefix: str) -> dict[str, type[Any]]:
    return {
        route: getattr(pattern.callback, "cls", type(None))
        for route, pattern in _patterns(get_resolver().url_patterns)
        if route.startswith(prefix) and not _INFERENCE_ROUTES.match(route)
    }


def test_administration_routes_are_viewsets() -> None:
    served = _served_by("v1/organization")
    assert len(served) > 40, "the walk found too few routes"
    for route, view in served.items():
        assert issubclass(view, (AdminViewSet, InviteVerificationViewSet)), route
        assert not route.endswith("/"), route


def test_conversation_crud_routes_are_viewsets_and_chat_stays_async() -> None:
    served = _served_by("v1/conversations")
    assert len(served) == 4
    for route, view in served.items():
        assert issubclass(view, ViewSetMixin), route
    streaming = _served_by("v1/conv/")
    assert len(streaming) == 3
    assert all(view is type(None) for view in streaming.values()), (
        "the streaming routes are plain async views"
    )


def _lookups(queries: list[dict[str, Any]], table: str) -> int:
    """Queries that read `table` by public id: how often the scope was looked up."""
    pattern = re.compile(rf'FROM "{table}" .*"{table}"\."public_id" =', re.S)
    return sum(1 for query in queries if pattern.search(query["sql"]))


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "/api_keys/{key}/rate_limits", None),
        ("post", "/api_keys/{key}/rate_limits", {"max_requests_per_1_minute": 7}),
        ("get", "/api_keys/{key}", None),
        ("get", "/users", None),
    ],
)
def test_a_project_request_looks_its_scope_up_once(method: str, suffix: str, body: Any) -> None:
    owner = make_user()
    org = make_org(owner=owner)
    project = make_project(org=org, owner=owner)
    key, _ = make_api_key(project=project, user=owner)
    assert key.key_type == ApiKey.Type.PROJECT
    path = f"/v1/organization/{org.public_id}/projects/{project.public_id}" + suffix.format(key=key.public_id)
    token = token_pair_issue(user=owner).access
    with CaptureQueriesContext(connection) as captured:
        response = getattr(Client(), method)(
            path, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
    assert response.status_code == 200, response.content
    assert _lookups(captured.captured_queries, "organizations_organization") == 1
    assert _lookups(captured.captured_queries, "organizations_project") == 1
