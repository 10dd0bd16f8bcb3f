"""Who is calling ``/v1``: an API key from the ``Authorization`` header, looked up in memory."""

from __future__ import annotations

from starlette.datastructures import Headers

from xrouter.errors import AuthenticationError
from xrouter.keys.cache import ActiveKey, KeyCache
from xrouter.keys.format import display_prefix, is_well_formed

_MISSING = (
    "You didn't provide an API key. Send it in the Authorization header as "
    "'Authorization: Bearer sk-xr-v1-...'."
)


def bearer_token(headers: Headers) -> str:
    value = headers.get("authorization")
    if not value:
        raise AuthenticationError(_MISSING, code="missing_api_key")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "The Authorization header must be 'Bearer <API key>'.", code="invalid_authorization"
        )
    return token


def authenticate(headers: Headers, keys: KeyCache) -> ActiveKey:
    """The calling key, or ``AuthenticationError`` (401) for a missing, malformed, unknown or
    revoked one. Does no I/O: a malformed key is refused by its checksum before any lookup."""
    token = bearer_token(headers)
    if not is_well_formed(token):
        raise AuthenticationError(
            "The API key is malformed. XRouter keys look like 'sk-xr-v1-...'; check that it was "
            "copied whole."
        )
    key = keys.lookup(token)
    if key is None:
        raise AuthenticationError(
            f"Incorrect API key provided: {display_prefix(token)}. It is unknown or revoked."
        )
    return key
