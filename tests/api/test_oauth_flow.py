"""The whole authorization-code flow as a public client plays it, over real HTTP."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

import httpx

from tests.api.oauth_helpers import (
    REDIRECT_URI,
    challenge_of,
    hidden_fields,
    make_client,
    make_user,
    query_of,
)
from tests.servers import RunningGateway

CHAT = {"model": "gigachat/GigaChat-2-Max", "messages": [{"role": "user", "content": "Привет"}]}


def test_public_client_end_to_end(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    client = make_client(gateway).info
    verifier = secrets.token_urlsafe(64)[:64]
    state = secrets.token_urlsafe(16)
    authorize_url = "/oauth/authorize?" + urlencode(
        {
            "response_type": "code",
            "client_id": client.id,
            "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge_of(verifier),
            "code_challenge_method": "S256",
            "state": state,
            "scope": "inference",
        }
    )
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        # Not signed in: the authorize URL sends the browser to the login page and back.
        first = http.get(authorize_url)
        assert first.status_code == 303
        login_page = http.get(first.headers["location"])
        assert login_page.status_code == 200
        assert "HttpOnly" in login_page.headers["set-cookie"]
        fields = hidden_fields(login_page.text)
        signed_in = http.post(
            "/ui/login",
            data={**fields, "email": user.email, "password": "correct horse battery staple"},
        )
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        assert "secure" not in cookie  # plain HTTP here; Secure over TLS
        assert signed_in.headers["location"] == authorize_url
        consent = http.get(signed_in.headers["location"])
        assert consent.status_code == 200
        assert client.name in consent.text
        assert REDIRECT_URI in consent.text
        assert consent.headers["cache-control"] == "no-store"
        assert consent.headers["x-frame-options"] == "DENY"
        approved = http.post(
            "/oauth/authorize", data={**hidden_fields(consent.text), "decision": "allow"}
        )
    assert approved.status_code == 303
    location = approved.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    answer = query_of(location)
    assert answer["state"] == state
    assert answer["iss"] == gateway.runtime.auth.tokens.issuer

    token_response = httpx.post(
        f"{gateway.url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": REDIRECT_URI,
            "client_id": client.id,
            "code_verifier": verifier,
        },
    )
    assert token_response.status_code == 200, token_response.text
    assert token_response.headers["cache-control"] == "no-store"
    grant = token_response.json()
    assert grant["token_type"] == "Bearer"
    assert grant["scope"] == "inference"
    assert 364 * 86400 < grant["expires_in"] <= 365 * 86400
    token = grant["access_token"]

    headers = {"Authorization": f"Bearer {token}"}
    reply = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"]

    revoked = httpx.post(
        f"{gateway.url}/oauth/revoke", data={"token": token, "client_id": client.id}
    )
    assert revoked.status_code == 200
    refused = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers, timeout=30
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_token"
    assert "revoked" in refused.json()["error"]["message"]
