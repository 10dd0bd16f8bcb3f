"""Sign-in, sign-out, the authorized-apps page, and what protects them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.oauth_helpers import (
    Browser,
    exchange,
    get_code,
    hidden_fields,
    make_client,
    make_user,
    new_verifier,
    signed_in_browser,
)
from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from xrouter.emulators.server import RunningEmulator
from xrouter.storage.migrate import upgrade


def browser_for(gateway: RunningGateway) -> Browser:
    return Browser(httpx.Client(base_url=gateway.url, timeout=30))


@pytest.mark.parametrize(
    "next_path",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "/ui/../\\evil",
        "javascript:alert(1)",
        "/health",
    ],
)
def test_login_never_redirects_off_site(gateway: RunningGateway, next_path: str) -> None:
    user = make_user(gateway)
    with browser_for(gateway) as browser:
        response = browser.login(user.email, next_path=next_path)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/keys"


def test_login_returns_to_the_authorize_request(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    # Some clients leave the redirect URI unencoded in the query.
    target = "/oauth/authorize?client_id=x&redirect_uri=https://app.example/cb&state=a%20b"
    with browser_for(gateway) as browser:
        response = browser.login(user.email, next_path=target)
    assert response.headers["location"] == target


def test_login_form_needs_its_csrf_token(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    with browser_for(gateway) as browser:
        browser.http.get("/ui/login")
        response = browser.http.post(
            "/ui/login", data={"email": user.email, "password": "correct horse battery staple"}
        )
    assert response.status_code == 403
    assert "xrouter_session" not in response.headers.get("set-cookie", "")


def test_wrong_password_is_refused_without_saying_which_part(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    with browser_for(gateway) as browser:
        wrong_password = browser.login(user.email, password="not the password at all")
        unknown_user = browser.login("nobody@example.com", password="not the password at all")
    for response in (wrong_password, unknown_user):
        assert response.status_code == 401
        assert "Wrong email or password." in response.text


def test_cookies_are_secure_over_tls(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    # uvicorn trusts X-Forwarded-Proto from loopback: as behind a TLS-terminating proxy.
    tls = {"x-forwarded-proto": "https"}
    with httpx.Client(base_url=gateway.url, headers=tls, timeout=30) as http:
        page = http.get("/ui/login")
        browser_cookie = page.headers["set-cookie"]
        assert "secure" in browser_cookie.lower()
        # httpx keeps Secure cookies away from plain HTTP; a browser on TLS would send it.
        cookie = browser_cookie.split(";", 1)[0]
        response = http.post(
            "/ui/login",
            data={
                **hidden_fields(page.text),
                "email": user.email,
                "password": "correct horse battery staple",
            },
            headers={"cookie": cookie},
        )
    assert response.status_code == 303
    session_cookie = response.headers["set-cookie"].lower()
    assert session_cookie.startswith("xrouter_session=")
    assert "secure" in session_cookie
    assert "httponly" in session_cookie


def test_logout_ends_the_session(gateway: RunningGateway) -> None:
    with signed_in_browser(gateway, make_user(gateway)) as browser:
        apps = browser.http.get("/ui/apps")
        assert apps.status_code == 200
        token = hidden_fields(apps.text)["csrf_token"]
        refused = browser.http.post("/ui/logout", data={"csrf_token": "x" * 64})
        assert refused.status_code == 403
        stolen_cookie = browser.http.cookies.get("xrouter_session")
        logged_out = browser.http.post("/ui/logout", data={"csrf_token": token})
        assert logged_out.status_code == 303
        again = browser.http.get("/ui/apps")
        assert again.status_code == 303
        assert again.headers["location"].startswith("/ui/login")
    # The old cookie is dead on the server, not only deleted in the browser.
    with browser_for(gateway) as thief:
        thief.http.cookies.set("xrouter_session", stolen_cookie or "")
        assert thief.http.get("/ui/apps").status_code == 303


def test_apps_page_lists_and_revokes_an_app(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    client = make_client(gateway).info
    verifier = new_verifier()
    with signed_in_browser(gateway, user) as browser:
        code = get_code(gateway, browser, client.id, verifier)
        token = exchange(gateway, client.id, code, verifier).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{gateway.url}/v1/models", headers=headers).status_code == 200
        page = browser.http.get("/ui/apps")
        assert client.id in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        fields = hidden_fields(page.text)
        revoked = browser.http.post(
            "/ui/apps/revoke", data={"csrf_token": fields["csrf_token"], "client_id": client.id}
        )
        assert revoked.status_code == 303
        assert client.id not in browser.http.get(revoked.headers["location"]).text
    assert httpx.get(f"{gateway.url}/v1/models", headers=headers).status_code == 401


def test_another_users_key_cannot_be_revoked(gateway: RunningGateway) -> None:
    victim_key = gateway.loop.run(gateway.runtime.key_service.create("victim", owner="usr_x"))
    with signed_in_browser(gateway, make_user(gateway)) as browser:
        fields = hidden_fields(browser.http.get("/ui/apps").text)
        response = browser.http.post(
            "/ui/keys/revoke",
            data={"csrf_token": fields["csrf_token"], "key_id": victim_key.info.id},
        )
    assert response.status_code == 404
    assert gateway.runtime.keys.lookup(victim_key.key) is not None


def test_pages_speak_russian_and_english(gateway: RunningGateway) -> None:
    with browser_for(gateway) as browser:
        russian = browser.http.get("/ui/login", headers={"accept-language": "ru-RU,ru;q=0.9"})
        assert 'lang="ru"' in russian.text
        assert "Вход в XRouter" in russian.text
        english = browser.http.get("/ui/login", params={"lang": "en"})
        assert "Sign in to XRouter" in english.text
        # The choice sticks in a cookie.
        assert (
            "Sign in to XRouter"
            in browser.http.get("/ui/login", headers={"accept-language": "ru"}).text
        )
    stylesheet = httpx.get(f"{gateway.url}/ui/static/xrouter.css")
    assert stylesheet.status_code == 200
    assert "text/css" in stylesheet.headers["content-type"]


@pytest.fixture(scope="module")
def strict_gateway(
    loop: BackgroundLoop,
    emulators: dict[str, RunningEmulator],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    """A gateway of its own with tight sign-in limits (they count per client IP)."""
    database: Path = tmp_path_factory.mktemp("strict") / "xrouter.db"
    settings = gateway_settings(
        database,
        emulators["gigachat"].url,
        emulators["yandex"].url,
        login_attempts_per_account=3,
        login_attempts_per_ip=5,
    )
    upgrade(settings.database_url)
    running = RunningGateway(settings, loop)
    yield running
    running.stop()


def test_failed_logins_are_limited_per_account_then_per_ip(strict_gateway: RunningGateway) -> None:
    gateway = strict_gateway
    target = make_user(gateway)
    with browser_for(gateway) as browser:
        for _ in range(3):
            assert browser.login(target.email, password="wrong wrong wrong").status_code == 401
        locked = browser.login(target.email)  # even the right password waits now
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) > 0
        # Other accounts still work from this address until the address's own limit.
        other = make_user(gateway)
        assert browser.login(other.email, password="wrong wrong wrong").status_code == 401
        assert browser.login(other.email, password="wrong wrong wrong").status_code == 401
        third = make_user(gateway)
        assert browser.login(third.email).status_code == 429
