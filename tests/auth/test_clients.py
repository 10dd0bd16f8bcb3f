from __future__ import annotations

import pytest

from tests.auth.conftest import AuthServer
from xrouter.auth.clients import ClientError, check_redirect_uri, redirect_uri_matches


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/callback",
        "https://app.example/cb?tenant=1",
        "http://127.0.0.1/callback",
        "http://localhost:8080/cb",
        "http://[::1]:9000/cb",
        "com.example.app:/oauth2redirect",
    ],
)
def test_allowed_redirect_uris(uri: str) -> None:
    assert check_redirect_uri(uri) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "http://app.example/callback",
        "https://app.example/cb#fragment",
        "javascript:alert(1)",
        "data:text/html,hi",
        "/relative/path",
        "https://",
        "https://" + "a" * 2000 + ".example/",
    ],
)
def test_refused_redirect_uris(uri: str) -> None:
    with pytest.raises(ClientError):
        check_redirect_uri(uri)


@pytest.mark.parametrize(
    ("registered", "given", "matches"),
    [
        ("https://app.example/cb", "https://app.example/cb", True),
        ("https://app.example/cb", "https://app.example/cb/", False),
        ("https://app.example/cb", "https://APP.example/cb", False),
        ("https://app.example/cb", "https://app.example:443/cb", False),
        ("https://app.example/cb", "https://app.example/cb?x=1", False),
        # RFC 8252 §7.3: any port on a loopback IP, everything else identical.
        ("http://127.0.0.1/cb", "http://127.0.0.1:53121/cb", True),
        ("http://[::1]/cb", "http://[::1]:8000/cb", True),
        ("http://127.0.0.1/cb", "http://127.0.0.1:53121/other", False),
        ("http://127.0.0.1/cb", "http://127.0.0.2:53121/cb", False),
        ("http://127.0.0.1/cb", "https://127.0.0.1:53121/cb", False),
        ("http://localhost/cb", "http://localhost:53121/cb", False),
    ],
)
def test_redirect_uri_matching(registered: str, given: str, matches: bool) -> None:
    assert redirect_uri_matches(registered, given) is matches


async def test_public_and_confidential_client_authentication(server: AuthServer) -> None:
    public = await server.clients.create("Public", ["https://a.example/cb"])
    assert public.secret is None
    assert await server.clients.authenticate(public.info.id, None) == public.info
    assert await server.clients.authenticate(public.info.id, "anything") is None
    private = await server.clients.create("Private", ["https://b.example/cb"], confidential=True)
    assert private.secret is not None
    assert private.secret not in repr(private)
    assert await server.clients.authenticate(private.info.id, private.secret) == private.info
    assert await server.clients.authenticate(private.info.id, None) is None
    assert await server.clients.authenticate(private.info.id, private.secret + "x") is None
    assert await server.clients.authenticate("xrc_unknown", None) is None
    assert [client.id for client in await server.clients.list()] == [
        public.info.id,
        private.info.id,
    ]
