"""Access tokens at the gateway: every forged, stale or misdirected token gets 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc.jwk import RSAKey

from tests.api.oauth_helpers import (
    exchange,
    get_code,
    make_client,
    make_user,
    new_verifier,
    signed_in_browser,
)
from tests.servers import RunningGateway
from xrouter.auth.scopes import PROFILE

CHAT = {"model": "gigachat/GigaChat-2-Max", "messages": [{"role": "user", "content": "Hi"}]}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64(json.dumps(value).encode())


@pytest.fixture(scope="module")
def user_and_client(gateway: RunningGateway) -> tuple[str, str]:
    return make_user(gateway).id, make_client(gateway).info.id


def claims(gateway: RunningGateway, ids: tuple[str, str], **changes: Any) -> dict[str, Any]:
    tokens = gateway.runtime.auth.tokens
    now = int(time.time())
    values = {
        "iss": tokens.issuer,
        "sub": ids[0],
        "aud": tokens.audience,
        "exp": now + 3600,
        "iat": now,
        "jti": f"at_test{now}{time.perf_counter_ns() % 10**9}",
        "client_id": ids[1],
        "scope": "inference",
        **changes,
    }
    return {name: value for name, value in values.items() if value is not None}


def sign(gateway: RunningGateway, body: dict[str, Any], **header: Any) -> str:
    """Sign with the gateway's own current key, whatever the header says (no JOSE library
    checks in the way: these tokens are meant to be wrong)."""
    signer = gateway.runtime.auth.signing_keys.signer()
    protected = {"alg": "RS256", "typ": "at+jwt", "kid": signer.kid, **header}
    protected = {name: value for name, value in protected.items() if value is not None}
    signing_input = f"{b64json(protected)}.{b64json(body)}".encode()
    private = signer.key.private_key
    assert private is not None
    signature = private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{b64(signature)}"


def models(gateway: RunningGateway, token: str, **params: str) -> httpx.Response:
    return httpx.get(
        f"{gateway.url}/v1/models",
        params=params or None,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def assert_refused(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_token"
    assert reason in error["message"]
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_a_well_formed_token_is_accepted(
    gateway: RunningGateway, user_and_client: tuple[str, str]
) -> None:
    response = models(gateway, sign(gateway, claims(gateway, user_and_client)))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": int(time.time()) - 1}, "expired"),
        ({"aud": "https://other.example/v1"}, "audience"),
        ({"aud": ["https://other.example/v1"]}, "audience"),
        ({"iss": "https://other.example"}, "issuer"),
        ({"iat": int(time.time()) + 3600}, "not valid yet"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"exp": "tomorrow"}, "numbers"),
        ({"sub": None}, "non-empty strings"),
        ({"jti": ""}, "non-empty strings"),
    ],
)
def test_bad_claims_are_refused(
    gateway: RunningGateway, user_and_client: tuple[str, str], changes: dict[str, Any], reason: str
) -> None:
    assert_refused(
        models(gateway, sign(gateway, claims(gateway, user_and_client, **changes))), reason
    )


def test_a_token_for_several_audiences_including_ours_is_accepted(
    gateway: RunningGateway, user_and_client: tuple[str, str]
) -> None:
    audience = ["https://other.example", gateway.runtime.auth.tokens.audience]
    token = sign(gateway, claims(gateway, user_and_client, aud=audience))
    assert models(gateway, token).status_code == 200


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+JWT2", None])
def test_typ_other_than_at_jwt_is_refused(
    gateway: RunningGateway, user_and_client: tuple[str, str], typ: str | None
) -> None:
    token = sign(gateway, claims(gateway, user_and_client), typ=typ)
    assert_refused(models(gateway, token), "typ")


def test_application_at_jwt_typ_is_accepted(
    gateway: RunningGateway, user_and_client: tuple[str, str]
) -> None:
    token = sign(gateway, claims(gateway, user_and_client), typ="application/at+jwt")
    assert models(gateway, token).status_code == 200


def _kid(gateway: RunningGateway) -> str:
    return gateway.runtime.auth.signing_keys.signer().kid


def test_alg_none_is_refused(gateway: RunningGateway, user_and_client: tuple[str, str]) -> None:
    header = {"alg": "none", "typ": "at+jwt", "kid": _kid(gateway)}
    token = f"{b64json(header)}.{b64json(claims(gateway, user_and_client))}."
    assert_refused(models(gateway, token), "algorithm")


def test_hs256_signed_with_the_public_key_is_refused(
    gateway: RunningGateway, user_and_client: tuple[str, str]
) -> None:
    jwks = httpx.get(f"{gateway.url}/.well-known/jwks.json").json()
    public = next(key for key in jwks["keys"] if key["kid"] == _kid(gateway))
    pem = RSAKey.import_key(public).as_pem(private=False)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": public["kid"]}
    signing_input = f"{b64json(header)}.{b64json(claims(gateway, user_and_client))}"
    for secret in (pem, json.dumps(public).encode()):
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert_refused(models(gateway, f"{signing_input}.{b64(signature)}"), "algorithm")


def test_a_tampered_payload_or_signature_is_refused(
    gateway: RunningGateway, user_and_client: tuple[str, str]
) -> None:
    token = sign(gateway, claims(gateway, user_and_client, scope="profile"))
    header, _, signature = token.split(".")
    upgraded = b64json(claims(gateway, user_and_client, scope="inference"))
    assert_refused(models(gateway, f"{header}.{upgraded}.{signature}"), "signature")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    assert_refused(models(gateway, f"{header}.{token.split('.')[1]}.{flipped}"), "signature")


def test_a_token_signed_with_a_foreign_key_is_refused(
    gateway: RunningGateway, user_and_client: tuple[str, str]
) -> None:
    from joserfc import jws

    foreign = RSAKey.generate_key(2048, parameters={"kid": "attacker"}, private=True)
    body = json.dumps(claims(gateway, user_and_client)).encode()
    header = {"alg": "RS256", "typ": "at+jwt", "kid": "attacker"}
    token = jws.serialize_compact(header, body, foreign, algorithms=["RS256"])
    assert_refused(models(gateway, token), "kid")
    # Even under our own kid, the signature does not verify.
    header["kid"] = _kid(gateway)
    token = jws.serialize_compact(header, body, foreign, algorithms=["RS256"])
    assert_refused(models(gateway, token), "signature")


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012 (shared with the test on purpose)

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"keys": []}')

    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture
def key_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("header_name", ["jku", "x5u"])
def test_jku_and_x5u_are_never_fetched(
    gateway: RunningGateway, user_and_client: tuple[str, str], key_server: str, header_name: str
) -> None:
    for kid in (_kid(gateway), "elsewhere"):
        token = sign(
            gateway,
            claims(gateway, user_and_client),
            **{header_name: f"{key_server}/keys", "kid": kid},
        )
        assert_refused(models(gateway, token), "jku")
    time.sleep(0.1)
    assert _Recorder.hits == []


def test_jwk_x5c_and_crit_headers_are_refused(
    gateway: RunningGateway, user_and_client: tuple[str, str]
) -> None:
    public = gateway.runtime.auth.signing_keys.jwks()["keys"][0]
    for header in ({"jwk": public}, {"x5c": ["MIIB"]}, {"crit": ["exp"]}):
        assert_refused(
            models(gateway, sign(gateway, claims(gateway, user_and_client), **header)), "crit"
        )


@pytest.mark.parametrize("token", ["a.b.c", "e30.e30.", "x" * 9000 + ".a.b", "onlyonepart"])
def test_garbage_is_refused(gateway: RunningGateway, token: str) -> None:
    response = models(gateway, token)
    assert response.status_code == 401


def test_a_token_without_the_inference_scope_gets_403(
    gateway: RunningGateway, user_and_client: tuple[str, str]
) -> None:
    response = models(gateway, sign(gateway, claims(gateway, user_and_client, scope=PROFILE)))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_a_token_in_the_query_string_is_refused(
    gateway: RunningGateway, user_and_client: tuple[str, str]
) -> None:
    token = sign(gateway, claims(gateway, user_and_client))
    response = httpx.get(f"{gateway.url}/v1/models", params={"access_token": token})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_in_query"
    # Also when the header carries a valid token: the URL has leaked it already.
    response = models(gateway, token, access_token=token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_in_query"


def test_revocation_reaches_a_cached_token(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    client = make_client(gateway).info
    verifier = new_verifier()
    with signed_in_browser(gateway, user) as browser:
        code = get_code(gateway, browser, client.id, verifier)
    grant = exchange(gateway, client.id, code, verifier)
    token = grant.json()["access_token"]
    for _ in range(3):  # the second and third calls hit the verification cache
        assert models(gateway, token).status_code == 200
    revoked = gateway.loop.run(gateway.runtime.auth.grants.revoke_app(user.id, client.id))
    assert revoked == 1
    assert_refused(models(gateway, token), "revoked")


def test_an_expired_token_from_the_issuer_is_refused(
    gateway: RunningGateway, user_and_client: tuple[str, str]
) -> None:
    tokens = gateway.runtime.auth.tokens
    token, claims_ = tokens.issue(
        user_and_client[0], user_and_client[1], frozenset({"inference"}), lifetime=2
    )
    assert models(gateway, token).status_code == 200  # now cached
    time.sleep(max(0.0, claims_.expires_at - time.time()) + 0.05)
    assert_refused(models(gateway, token), "expired")
