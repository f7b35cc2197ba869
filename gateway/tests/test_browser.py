"""The API reference and Django admin in a real headless Chromium (Debian's, no downloaded
browser), against the live gateway: Swagger "Authorize" + "Try it out", ReDoc, and an operator
revoking a key in Django admin, after which the API refuses it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.core.management import call_command

from inference.models import Provider
from organizations.tests.factories import make_api_key
from tests.live_server import LiveGateway

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The flags the machine's own probe uses: no sandbox as root, no calls home on a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    call_command("collectstatic", "--noinput", verbosity=0)  # Swagger/ReDoc assets, served by the gateway
    # Playwright's sync API keeps an event loop running in this thread; the ORM calls the tests
    # make here are still plain synchronous ones.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield launched
            launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def test_swagger_authorizes_with_a_project_key_and_tries_list_models(
    page: Any, live_gateway: LiveGateway, provider: Provider, project_key: Any
) -> None:
    offline: list[str] = []
    page.on(
        "request",
        lambda request: None if request.url.startswith(live_gateway.url) else offline.append(request.url),
    )
    page.goto(f"{live_gateway.url}/api/swagger")
    page.wait_for_selector("button.authorize")
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("Jan API Gateway")

    page.click("button.authorize")
    modal = page.locator(".modal-ux")
    scheme = modal.locator(".auth-container", has_text="ApiKeyAuth")
    scheme.locator("input").fill(project_key[1])
    scheme.locator("button.authorize").click()
    modal.locator("button.btn-done").first.click()

    # A deep link: with 150+ rows Swagger UI renders only what is in view; deep linking scrolls
    # to the operation and opens it, and the authorization persists across the reload.
    page.goto(f"{live_gateway.url}/api/swagger#/Chat%20Completions/listModels")
    page.reload()
    page.wait_for_selector("#operations-Chat_Completions-listModels .opblock-body")
    operation = page.locator("#operations-Chat_Completions-listModels")
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    status.first.wait_for()
    assert status.first.inner_text().strip() == "200"
    assert "fake-model" in operation.locator(".live-responses-table").inner_text()
    assert offline == []  # every asset came from the gateway itself: the page works offline

    # /api/swagger/index.html (jan-server's address) is the same page.
    page.goto(f"{live_gateway.url}/api/swagger/index.html#/Chat%20Completions/createChatCompletion")
    page.wait_for_selector("#operations-Chat_Completions-createChatCompletion")


def test_redoc_renders_the_reference(page: Any, live_gateway: LiveGateway) -> None:
    page.goto(f"{live_gateway.url}/api/docs")
    page.locator("h2", has_text="Create a chat completion").first.wait_for()
    assert page.locator("h1").first.inner_text().startswith("Jan API Gateway")
    # The three-panel layout: navigation, the operation, and its request/response samples.
    assert page.locator(".menu-content").count() == 1
    assert page.get_by_text("Response samples").count() >= 1


def test_operator_revokes_a_key_in_admin_and_the_api_refuses_it(
    page: Any, live_gateway: LiveGateway, provider: Provider
) -> None:
    from accounts.models import User

    User.objects.create_superuser(email="operator@example.com", password="correct horse battery")
    key, raw = make_api_key(name="ci-runner-key")
    headers = {"Authorization": f"Bearer {raw}"}
    assert httpx.get(f"{live_gateway.url}/v1/models", headers=headers).status_code == 200

    page.goto(f"{live_gateway.url}/admin/")
    page.fill("input[name=username]", "operator@example.com")
    page.fill("input[name=password]", "correct horse battery")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    page.goto(f"{live_gateway.url}/admin/organizations/apikey/")
    page.fill("#searchbar", "ci-runner")
    with page.expect_navigation():
        page.press("#searchbar", "Enter")
    page.wait_for_selector("#result_list")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert raw not in page.content()  # the secret never reaches the page
    rows.first.locator("input.action-select").check()
    page.select_option("select[name=action]", "revoke")
    page.click("button[name=index]")
    page.wait_for_selector("text=Revoked.")

    refused = httpx.get(f"{live_gateway.url}/v1/models", headers=headers)
    assert refused.status_code == 401
    key.refresh_from_db()
    assert key.deleted_at is not None
