"""The key pages over plain HTTP: what they show, who may see them, and what protects them."""

from __future__ import annotations

import re

import pytest

from tests.api.keys_helpers import chat
from tests.api.oauth_helpers import Browser, hidden_fields, make_user, signed_in_browser
from tests.servers import RunningGateway

_SECRET = re.compile(r'id="secret" type="text" readonly value="(sk-xr-v1-[A-Za-z0-9]+)"')


def _create(browser: Browser, **fields: str) -> str:
    page = browser.http.get("/ui/keys")
    token = hidden_fields(page.text)["csrf_token"]
    response = browser.http.post(
        "/ui/keys", data={"csrf_token": token, "name": "web key", "kind": "inference", **fields}
    )
    assert response.status_code == 201, response.text
    match = _SECRET.search(response.text)
    assert match is not None
    return match.group(1)


def _key_id(gateway: RunningGateway, owner: str, name: str) -> str:
    keys = gateway.loop.run(gateway.runtime.key_service.list(owner))
    return next(info.id for info in keys if info.name == name)


def test_pages_need_a_session(gateway: RunningGateway) -> None:
    with Browser(__import__("httpx").Client(base_url=gateway.url, timeout=30)) as browser:
        for path in ("/ui/keys", "/ui/keys/key_x", "/ui/admin", "/ui/keys/key_x/revoke"):
            response = browser.http.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/ui/login?next=")
        assert browser.http.get("/ui").headers["location"] == "/ui/keys"


def test_create_shows_the_secret_once(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    with signed_in_browser(gateway, user) as browser:
        secret = _create(browser, rpm="30", monthly_budget_rub="12,5", allowed_models="gigachat/*")
        listing = browser.http.get("/ui/keys").text
        assert "web key" in listing
        assert secret not in listing
        key_id = _key_id(gateway, user.id, "web key")
        page = browser.http.get(f"/ui/keys/{key_id}")
        assert page.status_code == 200
        assert secret not in page.text
        assert "gigachat/*" in page.text
        assert 'data-url="/api/keys/' in page.text
    info = gateway.loop.run(gateway.runtime.key_service.get(key_id))
    assert (info.rpm, info.monthly_budget_rub, info.allowed_models) == (30, 12.5, ("gigachat/*",))
    assert chat(gateway, secret).status_code == 200


def test_form_errors_are_shown_not_raised(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    with signed_in_browser(gateway, user) as browser:
        token = hidden_fields(browser.http.get("/ui/keys").text)["csrf_token"]
        response = browser.http.post(
            "/ui/keys", data={"csrf_token": token, "name": "x", "rpm": "many"}
        )
    assert response.status_code == 400
    assert 'role="alert"' in response.text
    assert "rpm" in response.text


def test_edit_and_revoke_with_confirmation(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    with signed_in_browser(gateway, user) as browser:
        secret = _create(browser)
        key_id = _key_id(gateway, user.id, "web key")
        page = browser.http.get(f"/ui/keys/{key_id}")
        fields = hidden_fields(page.text)
        saved = browser.http.post(
            f"/ui/keys/{key_id}",
            data={
                "csrf_token": fields["csrf_token"],
                "name": "renamed",
                "tpm": "9000",
                "disabled": "on",
            },
        )
        assert saved.status_code == 303
        assert "renamed" in browser.http.get(saved.headers["location"]).text
        assert chat(gateway, secret).status_code == 403
        confirm = browser.http.get(f"/ui/keys/{key_id}/revoke")
        assert confirm.status_code == 200
        # Without its CSRF token the form does nothing.
        refused = browser.http.post(f"/ui/keys/{key_id}/revoke", data={"csrf_token": "x"})
        assert refused.status_code == 403
        done = browser.http.post(f"/ui/keys/{key_id}/revoke", data=hidden_fields(confirm.text))
        assert done.headers["location"] == "/ui/keys?done=revoked"
    assert gateway.loop.run(gateway.runtime.key_service.get(key_id)).status == "revoked"
    assert chat(gateway, secret).status_code == 401


def test_content_logging_checkbox(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    with signed_in_browser(gateway, user) as browser:
        _create(browser, log_content="on")
        key_id = _key_id(gateway, user.id, "web key")
        assert gateway.loop.run(gateway.runtime.key_service.get(key_id)).log_content
        page = browser.http.get(f"/ui/keys/{key_id}")
        assert re.search(
            r'id="log_content" name="log_content" type="checkbox"[^>]* checked', page.text
        )
        # An unticked checkbox is not sent: saving the form without it switches logging off.
        fields = hidden_fields(page.text)
        saved = browser.http.post(
            f"/ui/keys/{key_id}", data={"csrf_token": fields["csrf_token"], "name": "web key"}
        )
        assert saved.status_code == 303
        page = browser.http.get(f"/ui/keys/{key_id}")
        assert re.search(r'id="log_content"[^>]*>', page.text)
        assert not re.search(r'id="log_content"[^>]* checked', page.text)
    assert not gateway.loop.run(gateway.runtime.key_service.get(key_id)).log_content


def test_another_users_key_pages_are_not_found(gateway: RunningGateway) -> None:
    owner, stranger = make_user(gateway), make_user(gateway)
    with signed_in_browser(gateway, owner) as browser:
        _create(browser)
    key_id = _key_id(gateway, owner.id, "web key")
    with signed_in_browser(gateway, stranger) as browser:
        token = hidden_fields(browser.http.get("/ui/keys").text)["csrf_token"]
        assert browser.http.get(f"/ui/keys/{key_id}").status_code == 404
        assert browser.http.get(f"/ui/keys/{key_id}/revoke").status_code == 404
        assert (
            browser.http.post(f"/ui/keys/{key_id}/revoke", data={"csrf_token": token}).status_code
            == 404
        )
        assert (
            browser.http.post(
                f"/ui/keys/{key_id}", data={"csrf_token": token, "name": "mine now"}
            ).status_code
            == 404
        )
        assert key_id not in browser.http.get("/ui/keys").text
        assert browser.http.get("/ui/admin").status_code == 403
    assert gateway.loop.run(gateway.runtime.key_service.get(key_id)).status == "active"


def test_admin_page_lists_users_and_keys(gateway: RunningGateway) -> None:
    owner, admin = make_user(gateway), make_user(gateway, admin=True)
    with signed_in_browser(gateway, owner) as browser:
        _create(browser)
    with signed_in_browser(gateway, admin) as browser:
        page = browser.http.get("/ui/admin")
        assert page.status_code == 200
        assert owner.email in page.text
        assert _key_id(gateway, owner.id, "web key") in page.text
        assert 'href="/ui/admin"' in page.text
        key_page = browser.http.get(f"/ui/keys/{_key_id(gateway, owner.id, 'web key')}")
        assert key_page.status_code == 200


@pytest.mark.parametrize(("lang", "heading"), [("en", "Your API keys"), ("ru", "Ваши API-ключи")])
def test_both_languages(gateway: RunningGateway, lang: str, heading: str) -> None:
    user = make_user(gateway)
    with signed_in_browser(gateway, user) as browser:
        page = browser.http.get("/ui/keys", params={"lang": lang})
    assert f'<html lang="{lang}">' in page.text
    assert heading in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
