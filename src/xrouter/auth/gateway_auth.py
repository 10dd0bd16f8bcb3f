"""Who is calling ``/v1``: an API key, or an OAuth access token with the ``inference`` scope.

Both are checked in memory: API keys by their digest in the key cache, access tokens by their
signature (cached by token hash until they expire) and the revocation denylist.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection

from xrouter.auth.scopes import INFERENCE
from xrouter.auth.tokens import AccessTokens, TokenError
from xrouter.errors import AuthenticationError, PermissionDeniedError
from xrouter.keys.cache import ActiveKey, KeyCache
from xrouter.keys.format import display_prefix, is_well_formed
from xrouter.keys.policy import check_usable

_MISSING = (
    "You didn't provide an API key. Send it in the Authorization header as "
    "'Authorization: Bearer sk-xr-v1-...' (or as 'x-api-key: sk-xr-v1-...')."
)
_API_KEY_PREFIX = "sk-"
TOKEN_KEY_PREFIX = "oauth"  # noqa: S105 (a label, not a secret)


def bearer_token(headers: Headers) -> str:
    """The credential of a request: ``Authorization: Bearer``, or Anthropic's ``x-api-key``
    header (which Anthropic clients send) when there is no Authorization header."""
    return _credential(headers.get("authorization"), headers.get("x-api-key"))


def _credential(authorization: str | None, api_key: str | None) -> str:
    if not authorization:
        api_key = (api_key or "").strip()
        if api_key:
            return api_key
        raise AuthenticationError(_MISSING, code="missing_api_key")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "The Authorization header must be 'Bearer <API key>'.", code="invalid_authorization"
        )
    return token


def authenticate(
    connection: HTTPConnection, keys: KeyCache, tokens: AccessTokens | None = None
) -> ActiveKey:
    """The caller, or ``AuthenticationError`` (401) for a missing, malformed, unknown, expired
    or revoked credential, ``PermissionDeniedError`` (403) for a token without the scope.
    Does no I/O: a malformed key is refused by its checksum before any lookup."""
    if b"access_token" in connection.scope.get("query_string", b""):
        _refuse_query_token(connection)
    # The first of a repeated header counts, as in Starlette's ``Headers.get``; one dict built
    # in C instead of a Headers object and a scan in Python per lookup.
    headers: dict[bytes, bytes] = dict(reversed(connection.scope["headers"]))
    authorization = headers.get(b"authorization")
    api_key = headers.get(b"x-api-key")
    token = _credential(
        None if authorization is None else authorization.decode("latin-1"),
        None if api_key is None else api_key.decode("latin-1"),
    )
    if tokens is not None and not token.startswith(_API_KEY_PREFIX) and token.count(".") == 2:
        return _access_token_caller(token, tokens)
    # The lookup refuses a malformed key by its checksum before any digest; only a refused
    # key is checked again, to say which of the two it was.
    key = keys.lookup(token)
    if key is None:
        if not is_well_formed(token):
            raise AuthenticationError(
                "The API key is malformed. XRouter keys look like 'sk-xr-v1-...'; check that it "
                "was copied whole."
            )
        raise AuthenticationError(
            f"Incorrect API key provided: {display_prefix(token)}. It is unknown or revoked."
        )
    # Disabled, expired and management keys are known but refused, each with its own reason.
    check_usable(key)
    return key


def _refuse_query_token(connection: HTTPConnection) -> None:
    # RFC 9700 §2.5 / RFC 6750 §2.3: tokens in URLs end up in logs and Referer headers.
    if "access_token" in connection.query_params:
        raise AuthenticationError(
            "Access tokens are not accepted in the URL; send 'Authorization: Bearer <token>'.",
            code="token_in_query",
        )


def _access_token_caller(token: str, tokens: AccessTokens) -> ActiveKey:
    try:
        claims = tokens.verify(token)
    except TokenError as error:
        raise AuthenticationError(
            f"The access token is not valid: {error}.",
            code="invalid_token",
            headers={"www-authenticate": 'Bearer error="invalid_token"'},
        ) from None
    if INFERENCE not in claims.scopes:
        raise PermissionDeniedError(
            f"The access token lacks the '{INFERENCE}' scope needed for /v1.",
            code="insufficient_scope",
            headers={"www-authenticate": f'Bearer error="insufficient_scope", scope="{INFERENCE}"'},
        )
    return ActiveKey(
        id=claims.jti,
        name=f"{TOKEN_KEY_PREFIX}:{claims.client_id}",
        owner=claims.subject,
        prefix=TOKEN_KEY_PREFIX,
    )
