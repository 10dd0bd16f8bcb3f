"""The web UI in a real browser: Debian's Chromium driven by Playwright (never a downloaded
browser). Sign in, create a key, copy it, use it, watch the usage chart update, revoke it, see
it refused; both languages, and no horizontal scrolling on a phone-sized window. Screenshots of
the main pages go to ``tests/ui/artifacts/``."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.api.keys_helpers import chat
from tests.api.oauth_helpers import PASSWORD, make_user
from tests.servers import RunningGateway

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
PHONE = {"width": 360, "height": 780}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("XROUTER_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, gateway: RunningGateway) -> Iterator[Page]:
    context = browser.new_context(
        base_url=gateway.url, viewport={"width": 1280, "height": 900}, locale="en-US"
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.url)
    context.set_default_timeout(15_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    yield opened
    context.close()
    assert errors == [], errors  # no script errors, no CSP violations


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _sign_in(page: Page, email: str) -> None:
    page.goto("/ui/keys")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your API keys")).to_be_visible()


def _no_horizontal_scroll(page: Page) -> None:
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"


def test_key_lifecycle_in_the_browser(page: Page, gateway: RunningGateway) -> None:
    user = make_user(gateway)
    page.goto("/ui/login")
    _shot(page, "01-login")
    _sign_in(page, user.email)

    page.get_by_label("Name").fill("Browser key")
    page.get_by_label("Requests per minute").fill("60")
    page.get_by_label("Monthly budget, ₽").fill("100")
    page.get_by_label("Allowed models").fill("gigachat/*")
    _shot(page, "02-keys-empty")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name="Your new key: Browser key")).to_be_visible()
    secret = page.get_by_role("textbox", name="Key", exact=True).input_value()
    assert secret.startswith("sk-xr-v1-")
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    _shot(page, "03-key-created")

    reply = chat(gateway, secret)
    assert reply.status_code == 200, reply.text

    page.get_by_role("link", name="Open: Browser key").click()
    expect(page.get_by_role("heading", name="Browser key")).to_be_visible()
    page.get_by_label("Period").select_option("minute")
    requests_total = page.locator('[data-total="requests"]')
    # The record is written within the flush interval; the chart refreshes on request.
    for _ in range(50):
        if requests_total.text_content() == "1":
            break
        page.get_by_role("button", name="Refresh").click()
        page.wait_for_timeout(200)
    expect(requests_total).to_have_text("1")
    expect(page.locator("#usage-chart rect.column")).to_have_count(60)
    assert page.locator("#usage-table tbody tr").count() == 1
    chat(gateway, secret)
    for _ in range(50):
        if requests_total.text_content() == "2":
            break
        page.get_by_role("button", name="Refresh").click()
        page.wait_for_timeout(200)
    expect(requests_total).to_have_text("2")
    _shot(page, "04-key-usage")
    page.get_by_label("Period").select_option("hour")
    expect(page.locator("#usage-chart rect.column")).to_have_count(48)
    # The last three ticks are the time axis': 24 hours apart, each must name its date.
    ticks = page.locator("#usage-chart text.tick").all_text_contents()[-3:]
    assert len(set(ticks)) == 3, ticks

    page.get_by_role("link", name="Revoke key").click()
    expect(page.get_by_role("heading", name="Revoke this key?")).to_be_visible()
    _shot(page, "05-revoke-confirm")
    page.get_by_role("button", name="Yes, revoke the key").click()
    expect(page.get_by_role("status")).to_have_text("Key revoked.")
    expect(page.get_by_role("row", name="Browser key")).to_contain_text("Revoked")
    _shot(page, "06-keys-list")
    refused = chat(gateway, secret)
    assert refused.status_code == 401


def test_language_switch_and_narrow_window(page: Page, gateway: RunningGateway) -> None:
    user = make_user(gateway)
    key = gateway.loop.run(gateway.runtime.key_service.create("Телефон", user.id, rpm=30))
    assert chat(gateway, key.key).status_code == 200
    _sign_in(page, user.email)
    page.get_by_role("link", name="Русский").click()
    expect(page.get_by_role("heading", name="Ваши API-ключи")).to_be_visible()
    assert page.get_attribute("html", "lang") == "ru"
    page.set_viewport_size(PHONE)
    _no_horizontal_scroll(page)
    _shot(page, "07-keys-ru-phone")
    page.get_by_role("link", name="Телефон").click()
    expect(page.get_by_role("heading", name="Расход")).to_be_visible()
    expect(page.locator('[data-total="requests"]')).not_to_have_text("—")
    _no_horizontal_scroll(page)
    _shot(page, "08-key-ru-phone")
    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", name="Usage")).to_be_visible()


def test_admin_view(page: Page, gateway: RunningGateway) -> None:
    admin = make_user(gateway, admin=True)
    other = make_user(gateway)
    gateway.loop.run(gateway.runtime.key_service.create("Team CI", other.id, tpd=100000))
    _sign_in(page, admin.email)
    page.get_by_role("link", name="Administration").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    expect(page.locator("#users-table").get_by_role("row", name=other.email)).to_be_visible()
    expect(page.get_by_role("row", name="Team CI")).to_contain_text(other.email)
    _shot(page, "09-admin")
    page.set_viewport_size(PHONE)
    _no_horizontal_scroll(page)
    _shot(page, "10-admin-phone")
    assert httpx.get(f"{gateway.url}/ui/admin").status_code == 303


def test_content_logging_toggle(page: Page, gateway: RunningGateway) -> None:
    user = make_user(gateway)
    _sign_in(page, user.email)
    toggle = page.get_by_label("Log prompts and completions")
    expect(toggle).not_to_be_checked()
    page.get_by_label("Name").fill("Logged key")
    toggle.check()
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name="Your new key: Logged key")).to_be_visible()
    [info] = gateway.loop.run(gateway.runtime.key_service.list(user.id))
    assert info.log_content
    page.goto(f"/ui/keys/{info.id}")
    expect(toggle).to_be_checked()
    toggle.uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    expect(toggle).not_to_be_checked()
    assert not gateway.loop.run(gateway.runtime.key_service.get(info.id)).log_content


def test_docs_render_with_other_hosts_unreachable(page: Page, gateway: RunningGateway) -> None:
    # A closed network: any request to another host fails, as it would there.
    elsewhere: list[str] = []

    def loopback_only(route: Route) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", loopback_only)
    page.goto("/docs")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    expect(page.locator(".opblock", has_text="/v1/chat/completions")).to_be_visible()
    expect(page.locator(".opblock", has_text="/v1/models/{model}")).to_be_visible()
    assert operations.count() > 10
    assert elsewhere == []
    _shot(page, "docs")
