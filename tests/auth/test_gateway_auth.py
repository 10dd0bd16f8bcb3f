"""Who calls ``/v1``: the credential is read from the request's headers as Starlette would
read them (the first of a repeated header counts), then looked up in the key cache."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from xrouter.auth.gateway_auth import authenticate
from xrouter.errors import AuthenticationError
from xrouter.keys.cache import ActiveKey, KeyCache
from xrouter.keys.format import generate_key
from xrouter.keys.hashing import KeyHasher

SECRET = generate_key()
OTHER = generate_key()
KEY = ActiveKey(id="key-1", name="test", owner=None, prefix="sk-xr-v1-abcd")


@pytest.fixture
def keys() -> KeyCache:
    hasher = KeyHasher(b"gateway-auth-test-pepper")
    cache = KeyCache(None, hasher, 60.0)  # type: ignore[arg-type]  # never refreshed here
    cache.put(KEY, hasher.digest(SECRET))
    return cache


def request(*headers: tuple[bytes, bytes]) -> Request:
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    return Request(scope)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"authorization", b"Bearer " + SECRET.encode())],
        [(b"authorization", b"bearer  " + SECRET.encode() + b" ")],
        [(b"x-api-key", SECRET.encode())],
        # The first Authorization header counts, and it wins over x-api-key.
        [(b"authorization", b"Bearer " + SECRET.encode()), (b"authorization", b"Bearer x")],
        [(b"x-api-key", OTHER.encode()), (b"authorization", b"Bearer " + SECRET.encode())],
    ],
)
def test_a_known_key_is_the_caller(keys: KeyCache, headers: list[tuple[bytes, bytes]]) -> None:
    assert authenticate(request(*headers), keys) == KEY


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ([], "missing_api_key"),
        ([(b"x-api-key", b"  ")], "missing_api_key"),
        ([(b"authorization", b"Basic " + SECRET.encode())], "invalid_authorization"),
        ([(b"authorization", b"Bearer")], "invalid_authorization"),
        ([(b"authorization", b"Bearer x"), (b"authorization", SECRET.encode())], "invalid_api_key"),
        ([(b"authorization", b"Bearer " + OTHER.encode())], "invalid_api_key"),
    ],
)
def test_a_missing_malformed_or_unknown_credential_is_refused(
    keys: KeyCache, headers: list[tuple[bytes, bytes]], code: str
) -> None:
    with pytest.raises(AuthenticationError) as refused:
        authenticate(request(*headers), keys)
    assert refused.value.code == code
