"""Fixtures for the authentication tests: the fake Google identity provider."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.google_idp import FakeGoogleIdP


@pytest.fixture(scope="session")
def _google_idp_server() -> Iterator[FakeGoogleIdP]:
    idp = FakeGoogleIdP().start()
    yield idp
    idp.stop()


@pytest.fixture
def google_idp(_google_idp_server: FakeGoogleIdP, settings: Any) -> FakeGoogleIdP:
    """The fake provider, reset, with the gateway's OAUTH2_GOOGLE_* settings pointed at it."""
    idp = _google_idp_server
    idp.reset()
    settings.OAUTH2_GOOGLE_CLIENT_ID = idp.client_id
    settings.OAUTH2_GOOGLE_CLIENT_SECRET = idp.client_secret
    settings.OAUTH2_GOOGLE_REDIRECT_URL = idp.redirect_uri
    settings.OAUTH2_GOOGLE_AUTHORIZE_URL = idp.authorize_url
    settings.OAUTH2_GOOGLE_TOKEN_URL = idp.token_url
    settings.OAUTH2_GOOGLE_CERTS_URL = idp.certs_url
    settings.OAUTH2_GOOGLE_ISSUER = idp.issuer
    return idp
