"""Every way an authorization or token request can be wrong, and the answer it gets."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import update

from tests.api.oauth_helpers import (
    REDIRECT_URI,
    Browser,
    authorize_params,
    exchange,
    get_code,
    hidden_fields,
    make_client,
    make_user,
    new_verifier,
    query_of,
    signed_in_browser,
)
from tests.servers import RunningGateway
from xrouter.auth.codes import hash_code
from xrouter.storage.database import session_factory
from xrouter.storage.models import AuthorizationCode, utc_now


@pytest.fixture(scope="module")
def setup(gateway: RunningGateway) -> Iterator[tuple[Browser, str]]:
    """A signed-in browser and a registered public client."""
    with signed_in_browser(gateway, make_user(gateway)) as browser:
        yield browser, make_client(gateway).info.id


def oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, str] = response.json()
    assert body["error"] == error
    assert body["error_description"]
    return body


def redirected_error(response: httpx.Response, error: str, state: str | None) -> dict[str, str]:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    answer = query_of(location)
    assert answer["error"] == error
    assert answer.get("state") == state
    assert "code" not in answer
    return answer


# Authorization endpoint: errors about the client or redirect URI are shown, never redirected.


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_id": "xrc_unknown"}, "not a registered client"),
        ({"client_id": None}, "no client_id"),
        ({"redirect_uri": "https://evil.example/callback"}, "not registered"),
        ({"redirect_uri": REDIRECT_URI + "/"}, "not registered"),
        ({"redirect_uri": REDIRECT_URI + "?x=1"}, "not registered"),
        ({"redirect_uri": None}, "no redirect_uri"),
    ],
)
def test_untrusted_client_or_redirect_uri_shows_an_error_page(
    gateway: RunningGateway,
    setup: tuple[Browser, str],
    overrides: dict[str, str | None],
    message: str,
) -> None:
    browser, client_id = setup
    response = browser.http.get(
        "/oauth/authorize?" + urlencode(authorize_params(client_id, new_verifier(), **overrides))
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert message in response.text
    assert "invalid_request" in response.text


def test_duplicated_parameters_are_refused_without_redirect(
    gateway: RunningGateway, setup: tuple[Browser, str]
) -> None:
    browser, client_id = setup
    params = list(authorize_params(client_id, new_verifier()).items())
    for name in ("redirect_uri", "state", "code_challenge"):
        duplicated = [*params, (name, "https://evil.example/" if name == "redirect_uri" else "x")]
        response = browser.http.get("/oauth/authorize?" + urlencode(duplicated))
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "repeated" in response.text


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"code_challenge": None}, "invalid_request", "code_challenge is required"),
        ({"code_challenge_method": None}, "invalid_request", "missing method means plain"),
        ({"code_challenge_method": "plain"}, "invalid_request", "not supported"),
        ({"code_challenge": "short"}, "invalid_request", "43 base64url"),
        ({"response_type": "token"}, "unsupported_response_type", "response_type=code"),
        ({"response_type": None}, "invalid_request", "response_type is required"),
        ({"scope": "inference admin"}, "invalid_scope", "unknown scope"),
    ],
)
def test_bad_requests_from_a_known_client_are_redirected_with_an_error(
    gateway: RunningGateway,
    setup: tuple[Browser, str],
    overrides: dict[str, str | None],
    error: str,
    message: str,
) -> None:
    browser, client_id = setup
    params = authorize_params(client_id, new_verifier(), **overrides)
    response = browser.http.get("/oauth/authorize?" + urlencode(params))
    answer = redirected_error(response, error, params["state"])
    assert message in answer["error_description"]
    assert answer["iss"] == gateway.runtime.auth.tokens.issuer


def test_deny_redirects_with_access_denied(
    gateway: RunningGateway, setup: tuple[Browser, str]
) -> None:
    browser, client_id = setup
    params = authorize_params(client_id, new_verifier())
    redirected_error(browser.authorize(params, decision="deny"), "access_denied", params["state"])


def test_consent_without_csrf_token_is_refused(
    gateway: RunningGateway, setup: tuple[Browser, str]
) -> None:
    browser, client_id = setup
    params = authorize_params(client_id, new_verifier())
    for token in (None, "0" * 64):
        data = {**params, "decision": "allow"}
        if token:
            data["csrf_token"] = token
        response = browser.http.post("/oauth/authorize", data=data)
        assert response.status_code == 403
        assert "location" not in response.headers


def test_consent_from_another_browser_session_is_refused(
    gateway: RunningGateway, setup: tuple[Browser, str]
) -> None:
    browser, client_id = setup
    params = authorize_params(client_id, new_verifier())
    consent = browser.http.get("/oauth/authorize?" + urlencode(params))
    fields = hidden_fields(consent.text)
    with signed_in_browser(gateway, make_user(gateway)) as other:
        response = other.http.post("/oauth/authorize", data={**fields, "decision": "allow"})
    assert response.status_code == 403


# Token endpoint.


def test_wrong_verifier_is_invalid_grant_and_spends_the_code(
    gateway: RunningGateway, setup: tuple[Browser, str]
) -> None:
    browser, client_id = setup
    verifier = new_verifier()
    code = get_code(gateway, browser, client_id, verifier)
    oauth_error(exchange(gateway, client_id, code, new_verifier()), 400, "invalid_grant")
    oauth_error(exchange(gateway, client_id, code, verifier), 400, "invalid_grant")


@pytest.mark.parametrize(
    "verifier", ["a" * 42, "a" * 129, "a" * 42 + "+", "a" * 42 + " ", "a" * 43 + "=="]
)
def test_malformed_verifier_is_invalid_request_and_keeps_the_code(
    gateway: RunningGateway, setup: tuple[Browser, str], verifier: str
) -> None:
    browser, client_id = setup
    good = new_verifier()
    code = get_code(gateway, browser, client_id, good)
    body = oauth_error(exchange(gateway, client_id, code, verifier), 400, "invalid_request")
    assert "code_verifier" in body["error_description"]
    assert exchange(gateway, client_id, code, good).status_code == 200


def test_missing_verifier_is_invalid_request(
    gateway: RunningGateway, setup: tuple[Browser, str]
) -> None:
    browser, client_id = setup
    code = get_code(gateway, browser, client_id, new_verifier())
    oauth_error(exchange(gateway, client_id, code, ""), 400, "invalid_request")


def test_code_replay_fails_and_revokes_the_tokens_issued_from_it(
    gateway: RunningGateway, setup: tuple[Browser, str]
) -> None:
    browser, client_id = setup
    verifier = new_verifier()
    code = get_code(gateway, browser, client_id, verifier)
    first = exchange(gateway, client_id, code, verifier)
    assert first.status_code == 200
    token = first.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{gateway.url}/v1/models", headers=headers).status_code == 200
    body = oauth_error(exchange(gateway, client_id, code, verifier), 400, "invalid_grant")
    assert "already used" in body["error_description"]
    refused = httpx.get(f"{gateway.url}/v1/models", headers=headers)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]["message"]


def test_expired_code_is_invalid_grant(gateway: RunningGateway, setup: tuple[Browser, str]) -> None:
    browser, client_id = setup
    verifier = new_verifier()
    code = get_code(gateway, browser, client_id, verifier)

    async def expire() -> None:
        async with session_factory(gateway.runtime.engine)() as session, session.begin():
            await session.execute(
                update(AuthorizationCode)
                .where(AuthorizationCode.code_hash == hash_code(code))
                .values(expires_at=utc_now() - timedelta(seconds=1))
            )

    gateway.loop.run(expire())
    body = oauth_error(exchange(gateway, client_id, code, verifier), 400, "invalid_grant")
    assert "expired" in body["error_description"]


def test_codes_live_sixty_seconds(gateway: RunningGateway) -> None:
    assert gateway.runtime.settings.oauth_code_ttl_seconds == 60


def test_redirect_uri_mismatch_is_invalid_grant(
    gateway: RunningGateway, setup: tuple[Browser, str]
) -> None:
    browser, client_id = setup
    verifier = new_verifier()
    code = get_code(gateway, browser, client_id, verifier)
    response = exchange(gateway, client_id, code, verifier, redirect_uri=REDIRECT_URI + "/other")
    body = oauth_error(response, 400, "invalid_grant")
    assert "redirect_uri" in body["error_description"]
    assert exchange(gateway, client_id, code, verifier).status_code == 200


def test_unknown_client_is_invalid_client(
    gateway: RunningGateway, setup: tuple[Browser, str]
) -> None:
    browser, client_id = setup
    verifier = new_verifier()
    code = get_code(gateway, browser, client_id, verifier)
    oauth_error(exchange(gateway, "xrc_nobody", code, verifier), 401, "invalid_client")
    response = httpx.post(
        f"{gateway.url}/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "code_verifier": verifier},
        auth=("xrc_nobody", "secret"),
    )
    oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")


def test_code_issued_to_another_client_is_invalid_grant(
    gateway: RunningGateway, setup: tuple[Browser, str]
) -> None:
    browser, client_id = setup
    other = make_client(gateway).info.id
    verifier = new_verifier()
    code = get_code(gateway, browser, client_id, verifier)
    body = oauth_error(exchange(gateway, other, code, verifier), 400, "invalid_grant")
    assert "another client" in body["error_description"]
    # The attempt did not spend the code for its rightful client.
    assert exchange(gateway, client_id, code, verifier).status_code == 200


def test_two_parallel_exchanges_of_one_code_exactly_one_wins(
    gateway: RunningGateway, setup: tuple[Browser, str]
) -> None:
    browser, client_id = setup
    for _ in range(3):
        verifier = new_verifier()
        code = get_code(gateway, browser, client_id, verifier)
        start = threading.Barrier(2)
        results: list[httpx.Response] = []

        def attempt(
            code: str,
            verifier: str,
            start: threading.Barrier,
            results: list[httpx.Response],
        ) -> None:
            start.wait()
            results.append(exchange(gateway, client_id, code, verifier))

        threads = [
            threading.Thread(target=attempt, args=(code, verifier, start, results))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(response.status_code for response in results) == [200, 400]
        loser = next(response for response in results if response.status_code == 400)
        oauth_error(loser, 400, "invalid_grant")


def test_duplicated_token_parameters_are_invalid_request(
    gateway: RunningGateway, setup: tuple[Browser, str]
) -> None:
    browser, client_id = setup
    verifier = new_verifier()
    code = get_code(gateway, browser, client_id, verifier)
    body = (
        f"grant_type=authorization_code&code={code}&code={code}&client_id={client_id}"
        f"&redirect_uri={REDIRECT_URI}&code_verifier={verifier}"
    )
    response = httpx.post(
        f"{gateway.url}/oauth/token",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    oauth_error(response, 400, "invalid_request")
    assert exchange(gateway, client_id, code, verifier).status_code == 200


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"grant_type": "refresh_token", "refresh_token": "x"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
        ({"grant_type": "authorization_code"}, "invalid_request"),
    ],
)
def test_other_grant_types_and_missing_parameters(
    gateway: RunningGateway, setup: tuple[Browser, str], data: dict[str, str], error: str
) -> None:
    _, client_id = setup
    response = httpx.post(f"{gateway.url}/oauth/token", data={**data, "client_id": client_id})
    oauth_error(response, 400, error)


def test_token_request_must_be_a_form(gateway: RunningGateway, setup: tuple[Browser, str]) -> None:
    _, client_id = setup
    response = httpx.post(
        f"{gateway.url}/oauth/token",
        json={"grant_type": "authorization_code", "client_id": client_id},
    )
    oauth_error(response, 400, "invalid_request")
