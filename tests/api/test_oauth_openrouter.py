"""The OpenRouter-compatible key flow: GET /auth, then POST /api/v1/auth/keys."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest

from tests.api.oauth_helpers import (
    Browser,
    challenge_of,
    hidden_fields,
    make_user,
    new_verifier,
    query_of,
    signed_in_browser,
)
from tests.servers import RunningGateway
from xrouter.auth.users import UserInfo
from xrouter.ui.pages import when

CALLBACK = "http://localhost:3000/openrouter-callback"


@pytest.fixture(scope="module")
def account(gateway: RunningGateway) -> Iterator[tuple[Browser, UserInfo]]:
    user = make_user(gateway)
    with signed_in_browser(gateway, user) as browser:
        yield browser, user


def start_params(verifier: str, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "callback_url": CALLBACK,
        "code_challenge": challenge_of(verifier),
        "code_challenge_method": "S256",
        **overrides,
    }
    return {name: value for name, value in params.items() if value is not None}


def approve(browser: Browser, params: dict[str, str], decision: str = "allow") -> httpx.Response:
    consent = browser.http.get("/auth?" + urlencode(params))
    assert consent.status_code == 200, consent.text
    assert CALLBACK in consent.text
    return browser.http.post("/auth", data={**hidden_fields(consent.text), "decision": decision})


def code_for(browser: Browser, verifier: str) -> str:
    response = approve(browser, start_params(verifier))
    assert response.status_code == 303
    assert response.headers["location"].startswith(CALLBACK + "?")
    return query_of(response.headers["location"])["code"]


def keys_request(gateway: RunningGateway, **body: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}/api/v1/auth/keys", json=body, timeout=30)


def test_openrouter_flow_creates_a_revocable_key(
    gateway: RunningGateway, account: tuple[Browser, UserInfo]
) -> None:
    browser, user = account
    verifier = new_verifier()
    # Signed out, the flow goes through the login page first.
    with Browser(httpx.Client(base_url=gateway.url, timeout=30)) as fresh:
        first = fresh.http.get("/auth?" + urlencode(start_params(verifier)))
        assert first.status_code == 303
        assert first.headers["location"].startswith("/ui/login?next=%2Fauth%3F")
    code = code_for(browser, verifier)
    response = keys_request(
        gateway, code=code, code_verifier=verifier, code_challenge_method="S256"
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["user_id"] == user.id
    key = body["key"]
    assert key.startswith("sk-xr-v1-")

    headers = {"Authorization": f"Bearer {key}"}
    # The key service put the key in this gateway's cache at once.
    assert httpx.get(f"{gateway.url}/v1/models", headers=headers).status_code == 200

    apps = browser.http.get("/ui/apps")
    assert apps.status_code == 200
    assert "App at http://localhost:3000" in apps.text
    created = next(
        info
        for info in gateway.loop.run(gateway.runtime.key_service.list())
        if info.owner == user.id and info.active
    )
    key_id = created.id
    # Shown as on the key pages: the display prefix as is, the time at the UI's offset.
    assert f"<code>{created.prefix}</code>" in apps.text
    offset = gateway.runtime.settings.budget_utc_offset_hours
    assert f">{when(created.created_at, offset)}</time>" in apps.text
    revoke = browser.http.post(
        "/ui/keys/revoke", data={**hidden_fields(apps.text), "key_id": key_id}
    )
    assert revoke.status_code == 303
    assert httpx.get(f"{gateway.url}/v1/models", headers=headers).status_code == 401


def test_replayed_code_fails_and_revokes_the_key(
    gateway: RunningGateway, account: tuple[Browser, UserInfo]
) -> None:
    browser, _ = account
    verifier = new_verifier()
    code = code_for(browser, verifier)
    first = keys_request(gateway, code=code, code_verifier=verifier)
    assert first.status_code == 200
    key = first.json()["key"]
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{gateway.url}/v1/models", headers=headers).status_code == 200
    replay = keys_request(gateway, code=code, code_verifier=verifier)
    assert replay.status_code == 400
    assert replay.json()["error"]["code"] == "invalid_grant"
    assert httpx.get(f"{gateway.url}/v1/models", headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"code_verifier": "x" * 43}, "invalid_grant"),  # wrong verifier
        ({"code_verifier": "short"}, "invalid_request"),
        ({"code_verifier": "a" * 42 + "!"}, "invalid_request"),
        ({}, "invalid_request"),  # no verifier
        ({"code_challenge_method": "plain"}, "invalid_request"),
    ],
)
def test_exchange_errors(
    gateway: RunningGateway,
    account: tuple[Browser, UserInfo],
    body: dict[str, str],
    code: str,
) -> None:
    browser, _ = account
    verifier = new_verifier()
    issued = code_for(browser, verifier)
    request = {"code": issued, **body}
    if "code_verifier" not in body and "code_challenge_method" in body:
        request["code_verifier"] = verifier
    response = keys_request(gateway, **request)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_unknown_code_and_duplicate_members(gateway: RunningGateway) -> None:
    response = keys_request(gateway, code="nope", code_verifier="a" * 43)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_grant"
    duplicated = httpx.post(
        f"{gateway.url}/api/v1/auth/keys",
        content=b'{"code": "a", "code": "b", "code_verifier": "' + b"a" * 43 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert duplicated.status_code == 400
    assert duplicated.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "overrides",
    [
        {"callback_url": "http://app.example/cb"},  # plain http off loopback
        {"callback_url": "javascript:alert(1)"},
        {"callback_url": "https://app.example/cb#frag"},
        {"callback_url": None},
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
        {"code_challenge": None},
    ],
)
def test_bad_start_requests_show_an_error_page(
    gateway: RunningGateway, account: tuple[Browser, UserInfo], overrides: dict[str, str | None]
) -> None:
    browser, _ = account
    response = browser.http.get("/auth?" + urlencode(start_params(new_verifier(), **overrides)))
    assert response.status_code == 400
    assert "location" not in response.headers


def test_deny_sends_access_denied(
    gateway: RunningGateway, account: tuple[Browser, UserInfo]
) -> None:
    browser, _ = account
    response = approve(browser, start_params(new_verifier(), state="s1"), decision="deny")
    assert response.status_code == 303
    answer = query_of(response.headers["location"])
    assert answer["error"] == "access_denied"
    assert answer["state"] == "s1"


def test_user_id_matches_a_fresh_account(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    verifier = new_verifier()
    with signed_in_browser(gateway, user) as browser:
        code = code_for(browser, verifier)
    response = keys_request(gateway, code=code, code_verifier=verifier)
    assert response.json()["user_id"] == user.id
