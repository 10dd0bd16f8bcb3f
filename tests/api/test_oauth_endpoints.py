"""Metadata (RFC 8414), JWKS (RFC 7517), introspection (RFC 7662) and revocation (RFC 7009)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.oauth_helpers import (
    exchange,
    get_code,
    hidden_fields,
    make_client,
    make_user,
    new_verifier,
    signed_in_browser,
)
from tests.servers import RunningGateway


def test_metadata_describes_the_server(gateway: RunningGateway) -> None:
    metadata = httpx.get(f"{gateway.url}/.well-known/oauth-authorization-server").json()
    issuer = gateway.runtime.auth.tokens.issuer
    assert metadata["issuer"] == issuer
    assert metadata["authorization_endpoint"] == f"{issuer}/oauth/authorize"
    assert metadata["token_endpoint"] == f"{issuer}/oauth/token"
    assert metadata["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["grant_types_supported"] == ["authorization_code"]
    assert "inference" in metadata["scopes_supported"]
    assert metadata["authorization_response_iss_parameter_supported"] is True


def test_jwks_publishes_public_keys_only(gateway: RunningGateway) -> None:
    keys = httpx.get(f"{gateway.url}/.well-known/jwks.json").json()["keys"]
    # The current key and the next period's, published before it signs anything.
    assert len(keys) >= 2
    for key in keys:
        assert key["kty"] == "RSA"
        assert key["alg"] == "RS256"
        assert key["use"] == "sig"
        assert {"n", "e", "kid"} <= set(key)
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
    assert gateway.runtime.auth.signing_keys.signer().kid in {key["kid"] for key in keys}


@pytest.fixture(scope="module")
def issued(gateway: RunningGateway) -> tuple[str, str, str, str]:
    """A live token, its public client, and a confidential client with its secret."""
    user = make_user(gateway)
    client = make_client(gateway).info
    verifier = new_verifier()
    with signed_in_browser(gateway, user) as browser:
        code = get_code(gateway, browser, client.id, verifier)
    token = exchange(gateway, client.id, code, verifier).json()["access_token"]
    resource = make_client(gateway, confidential=True)
    assert resource.secret is not None
    return token, client.id, resource.info.id, resource.secret


def test_introspection_by_a_confidential_client(
    gateway: RunningGateway, issued: tuple[str, str, str, str]
) -> None:
    token, client_id, resource_id, secret = issued
    response = httpx.post(
        f"{gateway.url}/oauth/introspect", data={"token": token}, auth=(resource_id, secret)
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["active"] is True
    assert body["client_id"] == client_id
    assert body["scope"] == "inference"
    assert body["token_type"] == "Bearer"
    assert body["aud"] == gateway.runtime.auth.tokens.audience
    garbage = httpx.post(
        f"{gateway.url}/oauth/introspect",
        data={"token": "nonsense", "client_id": resource_id, "client_secret": secret},
    )
    assert garbage.json() == {"active": False}


def test_introspection_refuses_public_and_unauthenticated_clients(
    gateway: RunningGateway, issued: tuple[str, str, str, str]
) -> None:
    token, client_id, resource_id, _ = issued
    for auth, data in (
        (None, {"token": token, "client_id": client_id}),
        ((resource_id, "wrong-secret"), {"token": token}),
        (None, {"token": token}),
    ):
        response = httpx.post(f"{gateway.url}/oauth/introspect", data=data, auth=auth)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"


def test_revocation_of_unknown_tokens_is_not_an_error(
    gateway: RunningGateway, issued: tuple[str, str, str, str]
) -> None:
    _, client_id, _, _ = issued
    for token in ("unknown", "a.b.c", "x" * 5000):
        response = httpx.post(
            f"{gateway.url}/oauth/revoke",
            data={"token": token, "token_type_hint": "access_token", "client_id": client_id},
        )
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
    missing = httpx.post(f"{gateway.url}/oauth/revoke", data={"client_id": client_id})
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"


def test_a_public_client_cannot_present_a_secret(
    gateway: RunningGateway, issued: tuple[str, str, str, str]
) -> None:
    token, client_id, _, _ = issued
    response = httpx.post(
        f"{gateway.url}/oauth/revoke",
        data={"token": token, "client_id": client_id, "client_secret": "guess"},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_oauth_endpoints_are_in_the_openapi_document(gateway: RunningGateway) -> None:
    paths = httpx.get(f"{gateway.url}/openapi.json").json()["paths"]
    for path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect", "/api/v1/auth/keys"):
        assert path in paths


def test_admin_api_registers_clients_for_signed_in_admins(gateway: RunningGateway) -> None:
    url = f"{gateway.url}/api/admin/oauth-clients"
    body = {"name": "Via API", "redirect_uris": ["https://api.example/cb"], "confidential": True}
    assert httpx.post(url, json=body).status_code == 401
    with signed_in_browser(gateway, make_user(gateway)) as browser:
        assert browser.http.get(url).status_code == 403  # not an administrator
    with signed_in_browser(gateway, make_user(gateway, admin=True)) as browser:
        csrf = hidden_fields(browser.http.get("/ui/apps").text)["csrf_token"]
        assert browser.http.post(url, json=body).status_code == 403  # no CSRF header
        created = browser.http.post(url, json=body, headers={"x-csrf-token": csrf})
        assert created.status_code == 201, created.text
        client = created.json()
        assert client["client_secret"].startswith("xrcs_")
        bad = {**body, "redirect_uris": ["http://evil.example/"]}
        refused = browser.http.post(url, json=bad, headers={"x-csrf-token": csrf})
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "redirect_uri"
        listed = browser.http.get(url).json()["data"]
    assert client["client_id"] in {row["client_id"] for row in listed}
    assert "client_secret" not in listed[0]
